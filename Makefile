# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch (from local disk here; on a GPU cluster install the CUDA build instead).
TORCH  ?= torch==2.13.0

.PHONY: demo test install bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/sweep run search_spaces/demo.yaml

test: install
	$(BIN)/python -m pytest -q -ra

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf runs .cache
