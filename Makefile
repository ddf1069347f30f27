# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch (from local disk here; on a GPU cluster install the CUDA build instead).
TORCH  ?= torch==2.13.0

.PHONY: demo test install browser bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/sweep run search_spaces/demo.yaml

# Debian's Chromium for the MLflow UI browser test; without it (not root, not Debian) that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { echo "installing chromium for the MLflow UI test"; apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } } || \
	  echo "chromium not available: the MLflow UI browser test will skip"

test: install browser
	$(BIN)/python -m pytest -q -ra

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf runs .cache
