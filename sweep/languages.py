"""Language metadata for reports and spec selections: family, script, XLM-R coverage, resource
class, and typological distance from URIEL (via ``lang2vec``).

The table is ``sweep/data/languages.csv``, one row per XTREME-R language (50). Sources:

- ISO codes: ISO 639-1 / 639-3 (``trainables.languages.ISO639_3``). ``uriel`` is the code that
  URIEL / lang2vec knows: for macrolanguages URIEL has no entry (ara, aze, fas, que, swa), so the
  standard individual language is used (arb, azj, pes, quz = Cusco Quechua, swh), and cmn for zh,
  zsm for ms.
- family / genus: Glottolog / WALS top-level family and a coarse branch (Basque is an isolate;
  Haitian Creole is listed as a French-based creole).
- script: the script the benchmarks' test sets use.
- ``xlmr``: in the 100 CC-100 languages of XLM-R (Conneau et al., 2020, table 6). Of the
  XTREME-R languages, Haitian Creole, Quechua, Wolof and Yoruba are not.
- ``resource_class``: Joshi et al. (2020), "The State and Fate of Linguistic Diversity and
  Inclusion in the NLP World", 0 (left-behinds) to 5 (winners), from the paper's published
  language taxonomy (``lang2tax.txt``).

Distances are computed from URIEL vectors shipped inside the ``lang2vec`` wheel, so they work
offline; the ``*_knn`` sets (URIEL's kNN-imputed vectors) have no missing values and are the
default. ``fam`` is slow to load (~20 s) and ``*_wals`` sets have missing entries (``--``) that are
dropped pairwise.
"""
from __future__ import annotations

import csv
import difflib
import functools
import importlib
import importlib.util
import logging
import os
import re
import sys
import types
from dataclasses import dataclass, fields
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DATA_FILE = "languages.csv"
METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class LanguageInfo:
    """One row of the metadata table."""

    iso639_1: str
    iso639_3: str
    uriel: str
    name: str
    family: str
    genus: str
    script: str
    xlmr: bool
    resource_class: int


@functools.lru_cache(maxsize=1)
def language_table() -> dict[str, LanguageInfo]:
    """ISO 639-1 code -> :class:`LanguageInfo`, read once from the package data."""
    text = resources.files("sweep").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    table: dict[str, LanguageInfo] = {}
    for row in csv.DictReader(text.splitlines()):
        row["xlmr"] = row["xlmr"].strip().lower() == "true"
        row["resource_class"] = int(row["resource_class"])
        table[row["iso639_1"]] = LanguageInfo(**row)
    return table


def language_info(code: str) -> LanguageInfo:
    """Metadata of one language (ISO 639-1 or 639-3 code)."""
    table = language_table()
    if code in table:
        return table[code]
    for info in table.values():
        if code in (info.iso639_3, info.uriel):
            return info
    raise KeyError(f"no metadata for language {code!r}{_suggest(code, table)}")


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- typology


def _ensure_pkg_resources() -> None:
    """lang2vec 1.1 imports ``pkg_resources`` for one helper (``resource_filename``), which new
    setuptools no longer ship; provide that helper when the module is missing."""
    try:
        import pkg_resources  # noqa: F401
        return
    except ImportError:
        pass

    def resource_filename(package: str, path: str) -> str:
        module = sys.modules.get(package) or importlib.import_module(package)
        return os.path.join(os.path.dirname(module.__file__), path)

    shim = types.ModuleType("pkg_resources")
    shim.resource_filename = resource_filename
    sys.modules["pkg_resources"] = shim


@functools.lru_cache(maxsize=None)
def _l2v() -> types.ModuleType:
    """lang2vec's module, loaded from its installed file: the wheel also installs a script
    ``bin/lang2vec.py`` that shadows the package whenever ``bin/`` is on ``sys.path``."""
    _ensure_pkg_resources()
    path = Path(str(metadata.distribution("lang2vec").locate_file("lang2vec/lang2vec.py")))
    name = "lang2vec.lang2vec"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # resource_filename(__name__) looks the module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    return module


def uriel_code(code: str) -> str:
    """The code lang2vec knows for a language (a known ISO 639-1/-3 code, or a URIEL code)."""
    try:
        return language_info(code).uriel
    except KeyError:
        if len(code) == 3 and code in _l2v().LANGUAGES:
            return code
        raise


def feature_sets() -> list[str]:
    """The URIEL feature sets lang2vec offers (``syntax_knn``, ``syntax_wals``, ``fam``, ...)."""
    return list(_l2v().available_feature_sets())


@functools.lru_cache(maxsize=None)
def uriel_vector(code: str, feature_set: str = "syntax_knn") -> tuple[float | None, ...]:
    """A language's raw URIEL feature vector (``None`` where URIEL has no value)."""
    uriel = uriel_code(code)  # first: an unknown language fails without loading URIEL
    try:
        raw = _l2v().get_features([uriel], feature_set)[uriel]
    except Exception as exc:  # lang2vec raises bare Exceptions for unknown sets/languages
        raise ValueError(f"lang2vec feature set {feature_set!r} for {code!r} ({uriel}): "
                         f"{exc}") from None
    return tuple(None if v == "--" else float(v) for v in raw)


@functools.lru_cache(maxsize=None)
def typological_distance(lang: str, reference: str = "en", feature_set: str = "syntax_knn",
                         metric: str = "cosine") -> float:
    """Distance between two languages' URIEL vectors: cosine (1 − cos) or euclidean, over the
    features both languages have. Cached in-process."""
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}"
                         f"{_suggest(metric, METRICS)}")
    a, b = uriel_vector(lang, feature_set), uriel_vector(reference, feature_set)
    pairs = np.array([(x, y) for x, y in zip(a, b) if x is not None and y is not None], float)
    if len(pairs) == 0:
        raise ValueError(f"no shared {feature_set} features for {lang!r} and {reference!r}")
    x, y = pairs[:, 0], pairs[:, 1]
    if metric == "euclidean":
        return float(np.linalg.norm(x - y))
    norm = np.linalg.norm(x) * np.linalg.norm(y)
    if norm == 0:
        raise ValueError(f"zero {feature_set} vector for {lang!r} or {reference!r}")
    return float(1.0 - x @ y / norm)


# --------------------------------------------------------------------------- selection

_COMPARISON = re.compile(r"^\s*(<=|>=|==|!=|<|>)?\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
        ">": lambda a, b: a > b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
_NUMERIC = ("resource_class",)
_BOOLEAN = ("xlmr",)
CRITERIA = tuple(f.name for f in fields(LanguageInfo) if f.name != "iso639_1") + ("distance",)


def _numeric_test(field: str, value: Any):
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a number or a comparison like '<=2', got {value!r}")
    if isinstance(value, (int, float)):
        return lambda x: x == value
    match = _COMPARISON.match(str(value))
    if not match:
        raise ValueError(f"{field}: expected a number or a comparison like '<=2', got {value!r}")
    op, bound = match.group(1) or "==", float(match.group(2))
    return lambda x: _OPS[op](x, bound)


def _bool_test(field: str, value: Any):
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        value = value.strip().lower() in ("true", "yes")
    if not isinstance(value, bool):
        raise ValueError(f"{field}: expected true or false, got {value!r}")
    return lambda x: x is value


def _text_test(field: str, value: Any):
    allowed = {getattr(info, field) for info in language_table().values()}
    wanted = value if isinstance(value, (list, tuple)) else [value]
    lower = {a.lower(): a for a in allowed}
    for v in wanted:
        if str(v).lower() not in lower:
            raise ValueError(f"{field}: unknown value {v!r}{_suggest(v, sorted(allowed))}")
    keep = {lower[str(v).lower()] for v in wanted}
    return lambda x: x in keep


def _test(field: str, value: Any):
    if field in _NUMERIC or field == "distance":
        return _numeric_test(field, value)
    if field in _BOOLEAN:
        return _bool_test(field, value)
    return _text_test(field, value)


def select_languages(languages: tuple[str, ...], criteria: dict[str, Any]) -> tuple[str, ...]:
    """The languages (in their given order) that meet every criterion.

    Criteria: ``resource_class`` (number or comparison: ``"<=2"``), ``xlmr`` (bool), ``family``,
    ``genus``, ``script``, ``name``, ``iso639_3`` (a value or a list, case-insensitive), and
    ``distance`` (syntactic cosine distance from English, a comparison like ``"<0.3"``).
    """
    tests = []
    for field, value in criteria.items():
        if field not in CRITERIA:
            raise ValueError(f"unknown language criterion {field!r}{_suggest(field, CRITERIA)}; "
                             f"known: {', '.join(CRITERIA)}")
        tests.append((field, _test(field, value)))
    selected = []
    for code in languages:
        info = language_info(code)
        if all(test(typological_distance(code) if field == "distance" else getattr(info, field))
               for field, test in tests):
            selected.append(code)
    return tuple(selected)
