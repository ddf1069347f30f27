"""A trial's files, readable without importing torch (the driver reads them).

``result.json`` is written last and atomically: its presence means the trial is complete.
``error.txt`` holds the one-line reason of a trial that failed. A trial folder is a local path
or an object-storage URI (``trainables.storage``).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
CURVE_FILE = "curve.json"   # the metrics of every finished epoch, for MLflow after a resume


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


class DamagedRecord(ValueError):
    """A record file that exists but cannot be what the engine wrote (empty, truncated, not
    JSON, missing fields): its message names the file and what is wrong."""


def parse_record(location, text: str, required: dict[str, type | tuple]) -> dict:
    """``text`` as a JSON object holding ``required`` fields of the given types, else a
    ``DamagedRecord`` naming ``location``."""
    from trainables import storage

    where = storage.display(location)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DamagedRecord(f"{where} is damaged ({'empty' if not text.strip() else f'not JSON: {exc}'})") from None
    if not isinstance(data, dict):
        raise DamagedRecord(f"{where} is damaged (not a JSON object)")
    for name, kind in required.items():
        if not isinstance(data.get(name), kind):
            raise DamagedRecord(f"{where} is damaged (field {name!r} missing or of the wrong type)")
    return data


RESULT_FIELDS = {"trial_id": str, "metrics": dict, "hparams": dict}


def load_result(output_dir: str | Path) -> dict | None:
    """A trial's ``result.json``, validated; None when there is none, ``DamagedRecord`` when it
    is not a complete record."""
    from trainables import storage

    location = storage.join(output_dir, RESULT_FILE)
    try:
        text = storage.read_text(location)
    except UnicodeDecodeError:
        raise DamagedRecord(f"{storage.display(location)} is damaged (not UTF-8 text)") from None
    return None if text is None else parse_record(location, text, RESULT_FIELDS)


def read_result(output_dir: str | Path) -> dict | None:
    """``load_result``, with a damaged record named in one warning and read as absent (the trial
    then runs again and writes a good one)."""
    try:
        return load_result(output_dir)
    except DamagedRecord as exc:
        log.warning("%s: the trial runs again", exc)
        return None


def record_epoch(output_dir: str | Path, metrics: dict) -> None:
    """Add an epoch's report to the trial's ``curve.json`` (an epoch that runs again replaces
    it and every later one). Written right after the epoch's resume state, before the report
    goes to Tune: a driver that missed the report (cut off by Ctrl-C) logs it from here when
    the trial resumes, so the MLflow curve has no gap."""
    from trainables import storage

    epoch = int(metrics["epoch"])
    points = [p for p in read_curve(output_dir) if int(p["epoch"]) < epoch]
    points.append({k: v for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
    storage.write_text(storage.join(output_dir, CURVE_FILE), json.dumps(points))


def read_curve(output_dir: str | Path) -> list[dict]:
    """The epochs in ``curve.json`` (none when it is missing or damaged)."""
    from trainables import storage

    try:
        points = json.loads(storage.read_text(storage.join(output_dir, CURVE_FILE)) or "[]")
    except (OSError, ValueError):
        return []
    if not isinstance(points, list):
        return []
    return [p for p in points if isinstance(p, dict) and isinstance(p.get("epoch"), (int, float))]


def perturbation_label(config: dict) -> str:
    """A short, MLflow-safe name for a perturbation config: ``char_noise-rate0.1``.

    Perturbed metrics are logged as ``<task>.<label>/<metric>/<lang>`` (and the drop of the
    main metric from clean as ``<task>.<label>/drop/<lang>``), so the report can pair them
    with the clean ``<task>/<metric>/<lang>``.

    Every setting counts, so configs that differ in any of them get different labels: a list
    (``ops``) is joined with ``_`` (``char_noise-opsswap_drop-rate0.1``; ``+`` is not
    MLflow-safe) and left out when it is the perturbation's default, so labels of configs
    without one are as before; a lexicon is named by its file stem (``lexiconen-de``,
    ``lexiconen-language`` for ``en-{language}.txt``). Only ``[A-Za-z0-9_.-]`` remain.
    """
    import re
    from pathlib import PurePath

    defaults = _perturbation_defaults(str(config["name"]))
    parts = [str(config["name"])]
    for key, value in sorted(config.items()):
        if key == "name" or isinstance(value, dict) or value in (None, ""):
            continue
        if isinstance(value, (list, tuple)):
            if tuple(value) == tuple(defaults.get(key, ())) or not value:
                continue
            value = "_".join(map(str, value))
        elif key == "lexicon":
            value = PurePath(str(value)).stem
        parts.append(f"{key}{value}")
    return re.sub(r"[^A-Za-z0-9_.-]", "", "-".join(parts))


def _perturbation_defaults(name: str) -> dict:
    """Default settings of a perturbation ({} for one this checkout does not know)."""
    import dataclasses

    try:
        from trainables.perturb import PERTURBATIONS

        settings = PERTURBATIONS[name].Settings
    except (ImportError, KeyError):
        return {}
    return {f.name: f.default for f in dataclasses.fields(settings) if f.default is not dataclasses.MISSING}
