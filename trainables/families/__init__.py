"""Task families: how a family's examples become features, which head it uses, how it is scored.

A task names its family; the training loop only talks to the ``Family`` interface. Every module
in this package that defines a ``Family`` subclass with a ``name`` is registered on first use,
so a new family is one new file.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

from trainables.families.base import Family

_FAMILIES: dict[str, Family] = {}


def _load_all() -> None:
    if _FAMILIES:
        return
    for module in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{module.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Family) and cls is not Family and getattr(cls, "name", None) \
                    and cls.__module__ == mod.__name__:
                _FAMILIES[cls.name] = cls()


def get_family(name: str) -> Family:
    _load_all()
    return _FAMILIES[name]


__all__ = ["Family", "get_family"]
