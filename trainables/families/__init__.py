"""Task families: how a family's examples become features, which head it uses, how it is scored.

A task names its family; the training loop only talks to the ``Family`` interface. Every module
in this package that defines a ``Family`` subclass with a ``name`` is registered on first use,
so a new family is one new file: ``get_family`` imports the modules (torch and all), while
``family_names`` reads the same names from the modules' source without importing them, so
task metadata (``TaskInfo``, which the torch-free planner builds) can check a task's family
without loading torch. Layering: ``tasks.base`` imports this package; families see tasks only
as a type (``TYPE_CHECKING``), so there is no cycle.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.families.base import Family

_FAMILIES: dict[str, "Family"] = {}
_BASE = "base"  # the module with the interface: no family in it


def _load_all() -> None:
    if _FAMILIES:
        return
    from trainables.families.base import Family

    for module in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{module.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Family) and cls is not Family and getattr(cls, "name", None) \
                    and cls.__module__ == mod.__name__:
                _FAMILIES[cls.name] = cls()


def get_family(name: str) -> "Family":
    _load_all()
    return _FAMILIES[name]


def _declared(source: str) -> dict[str, tuple[list[str], str | None]]:
    """Top-level classes of a module: {class: (base names, the string ``name = "..."`` or None)}."""
    out = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                 if isinstance(b, (ast.Name, ast.Attribute))]
        name = None
        for item in node.body:
            target = (item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1
                      else item.target if isinstance(item, ast.AnnAssign) else None)
            value = getattr(item, "value", None)
            if isinstance(target, ast.Name) and target.id == "name" and isinstance(value, ast.Constant) \
                    and isinstance(value.value, str):
                name = value.value
        out[node.name] = (bases, name)
    return out


@lru_cache(maxsize=1)
def family_names() -> tuple[str, ...]:
    """Names of the families of this package, read from the source of its modules (no import:
    no torch). A class counts when it derives from ``Family`` (or from a class that does) and
    sets ``name = "<literal>"`` in its body: what ``get_family`` registers."""
    classes: dict[str, tuple[list[str], str | None]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == _BASE:
            continue
        spec = importlib.util.find_spec(f"{__name__}.{module.name}")
        source = spec.loader.get_source(spec.name) if spec and spec.loader else None
        if source:
            classes.update(_declared(source))
    families = {"Family"}
    while True:  # subclasses of subclasses
        more = {c for c, (bases, _) in classes.items() if c not in families and families & set(bases)}
        if not more:
            break
        families |= more
    return tuple(sorted(name for c, (_, name) in classes.items() if c in families and name))


def __getattr__(attr: str):
    if attr == "Family":  # lazily: importing the package must stay torch-free
        from trainables.families.base import Family

        return Family
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["Family", "family_names", "get_family"]
