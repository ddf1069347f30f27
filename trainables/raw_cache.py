"""A disk cache for raw examples that tasks parse from local files in Python.

``datasets`` caches what it loads itself (the hub, its json/csv builders), but a CoNLL-U,
PAN-X or Tatoeba file read by our own readers is parsed again in every trial. Tasks loaded from a
``data_dir`` therefore keep their parsed splits as Arrow files under ``<cache_dir>/raw``, keyed by
task, split, language, options and the size and modification time of every file in the data
folder, so an edited file is read again and an unchanged one is memory-mapped.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import types
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


def folder_signature(folder: Path) -> list:
    """(relative path, size, mtime_ns) of every file below ``folder``, sorted."""
    out = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return sorted(out)


def code_digest(code: types.CodeType) -> str:
    """A hash of a function's bytecode and constants that is the same in every process.

    Nested code objects (lambdas, comprehensions) are hashed by their content: their ``repr``
    holds a memory address, which would make every new process miss the cache.
    """
    digest = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        digest.update(code_digest(const).encode() if isinstance(const, types.CodeType)
                      else repr(const).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()[:12]


def cached_load(load: Callable) -> Callable:
    """Wrap a task's ``load(split, language)``; only tasks reading a ``data_dir`` are cached."""

    # a changed loader (a new release) must not reuse what the old one parsed
    code = code_digest(load.__code__)

    @functools.wraps(load)
    def wrapper(self, split: str, language: str):
        options = self.options
        if not options.data_dir or not Path(options.data_dir).expanduser().is_dir():
            return load(self, split, language)
        folder = Path(options.data_dir).expanduser()
        ident = {"v": 1, "code": code, "task": type(self).__qualname__, "module": type(self).__module__,
                 "split": split, "language": language,
                 "options": {k: v for k, v in asdict(options).items() if k != "cache_dir"},
                 "files": folder_signature(folder)}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]
        target = Path(options.cache_dir).expanduser() / "raw" / f"{self.name}-{split}-{language}-{key}"
        import datasets

        if (target / "state.json").is_file():
            try:
                return datasets.load_from_disk(str(target))
            except Exception as exc:  # noqa: BLE001 - a damaged cache entry is rebuilt
                log.warning("raw cache %s unreadable (%s): reading the source again", target, exc)
        data = load(self, split, language)
        tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
        try:
            data.flatten_indices().save_to_disk(str(tmp)) if data._indices is not None else data.save_to_disk(str(tmp))
            os.replace(tmp, target)
        except OSError:  # another trial wrote it first, or the cache is read-only: fine either way
            shutil.rmtree(tmp, ignore_errors=True)
            return data
        return datasets.load_from_disk(str(target))

    wrapper.__raw_cached__ = True
    return wrapper
