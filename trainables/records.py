"""A trial's files on disk, readable without importing torch (the driver reads them).

``result.json`` is written last and atomically: its presence means the trial is complete.
``error.txt`` holds the one-line reason of a trial that failed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read_result(output_dir: str | Path) -> dict | None:
    path = Path(output_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def perturbation_label(config: dict) -> str:
    """A short, MLflow-safe name for a perturbation config: ``char_noise-rate0.1``.

    Perturbed metrics are logged as ``<task>.<label>/<metric>/<lang>`` (and the drop of the
    main metric from clean as ``<task>.<label>/drop/<lang>``), so the report can pair them
    with the clean ``<task>/<metric>/<lang>``.
    """
    import re

    parts = [str(config["name"])] + [f"{k}{v}" for k, v in sorted(config.items())
                                     if k not in ("name", "lexicon") and not isinstance(v, (dict, list))
                                     and v not in (None, "")]
    return re.sub(r"[^A-Za-z0-9_.-]", "", "-".join(parts))
