"""Task registry: every module in this package that defines a ``Task`` subclass registers it.

Adding a task = adding one file here with a class decorated by ``@register``.
"""
from __future__ import annotations

import importlib
import pkgutil

from trainables.tasks.base import Task, TaskDataError, TaskInfo, TaskOptions

_REGISTRY: dict[str, type[Task]] = {}
_LOADED = False


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its ``info.name``."""
    name = cls.info.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"task {name!r} registered twice")
    _REGISTRY[name] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    _LOADED = True


def task_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def task_info(name: str) -> TaskInfo:
    _load_all()
    try:
        return _REGISTRY[name].info
    except KeyError:
        raise KeyError(f"unknown task {name!r}") from None


def build_task(name: str, options: TaskOptions | None = None) -> Task:
    _load_all()
    return _REGISTRY[name](options)


__all__ = ["Task", "TaskDataError", "TaskInfo", "TaskOptions", "build_task", "register",
           "task_info", "task_names"]
