"""Driver-side preparation before any trial starts: build the tiny model, fetch/generate data.

Done once here so that concurrent trials find caches ready instead of racing to build them.
"""
from __future__ import annotations

import logging

from sweep.spec import TINY_MODEL, Spec
from trainables.tasks import build_task
from trainables.tasks.base import TaskOptions

log = logging.getLogger(__name__)


def study_tasks(spec: Spec) -> list[str]:
    names = {t for group in spec.intermediate for t in group} | {t.task for t in spec.targets}
    return sorted(names)


def prepare_study(spec: Spec) -> None:
    for name in study_tasks(spec):
        opts = spec.tasks.get(name)
        options = TaskOptions(cache_dir=spec.cache_dir, **(opts.model_dump(exclude_none=True) if opts else {}))
        build_task(name, options).prepare()
    if spec.model == TINY_MODEL:
        from trainables.model import resolve_model_path  # torch only when a model is built

        log.info("model: %s", resolve_model_path(TINY_MODEL, spec.cache_dir))
