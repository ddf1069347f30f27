"""Task registry: every module in this package that defines a ``Task`` subclass registers it.

Adding a task = adding one file here with a class decorated by ``@register``.
"""
from __future__ import annotations

from trainables.registry import Registry
from trainables.tasks.base import Task, TaskDataError, TaskInfo, TaskOptions

TASKS = Registry("task", __name__, key=lambda cls: cls.info.name)
#: class decorator: make a task available by its ``info.name``
register = TASKS.register


def task_names() -> list[str]:
    return TASKS.names()


def task_info(name: str) -> TaskInfo:
    return TASKS[name].info


def build_task(name: str, options: TaskOptions | None = None) -> Task:
    return TASKS[name](options)


__all__ = ["TASKS", "Task", "TaskDataError", "TaskInfo", "TaskOptions", "build_task", "register",
           "task_info", "task_names"]
