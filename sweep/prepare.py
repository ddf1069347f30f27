"""Driver-side preparation before any trial starts: build the tiny model, fetch/generate data, and
resolve every (task, split, language) the plan needs.

Done once here so that concurrent trials find caches ready instead of racing to build them, and
so that a study whose data is not there fails in seconds, with one line, instead of after
training: every ``data_dir`` file a trial will read is opened and parsed (the parsed splits land
in ``<cache_dir>/raw``, which the trials on this node memory-map), and every hub dataset is
downloaded once into the Hugging Face datasets cache (``HF_DATASETS_CACHE``, by default
``~/.cache/huggingface/datasets``; on a cluster point it at a shared folder so the nodes reuse
the driver's copy).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sweep.spec import TINY_MODEL, Spec, SpecError
from trainables.contract import TaskOptions
from trainables.tasks import build_task, task_info
from trainables.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Need:
    """One split in one language of one task that some job of the study loads."""

    task: str
    split: str         # "train" (the English training set, with translated_train), "dev", "test"
    language: str
    field: str         # the spec field that asks for it, for the error line


def study_tasks(spec: Spec) -> list[str]:
    names = {t for group in spec.intermediate for t in group} | {t.task for t in spec.targets}
    return sorted(names)


def study_needs(spec: Spec) -> list[Need]:
    """What the trials of the study will load, as the trainables load it: every training task's
    English train and dev split (``trainables.trial``), and each target's test split in every
    requested language; an evaluation-only target loads its test split only. Each once."""
    needs: dict[tuple[str, str, str], Need] = {}

    def add(task: str, split: str, language: str, field: str) -> None:
        needs.setdefault((task, split, language), Need(task, split, language, field))

    for i, group in enumerate(spec.intermediate):
        for name in group:
            english = task_info(name).train_language
            add(name, "train", english, f"intermediate[{i}]")
            add(name, "dev", english, f"intermediate[{i}]")
    for i, target in enumerate(spec.targets):
        info = task_info(target.task)
        if info.trainable:
            add(target.task, "train", info.train_language, f"targets[{i}]")
            add(target.task, "dev", info.train_language, f"targets[{i}]")
        for language in target.languages:
            add(target.task, "test", language, f"targets[{i}]")
    return list(needs.values())


def task_options(spec: Spec, name: str) -> TaskOptions:
    opts = spec.tasks.get(name)
    return TaskOptions(cache_dir=spec.cache_dir, **(opts.model_dump(exclude_none=True) if opts else {}))


def resolve(task: Task, need: Need, source: str | None) -> int:
    """Load one needed split (parse the file / download the hub dataset); its size. Any failure
    is one ``SpecError`` line naming the spec field, the task, the split and the language."""
    try:
        data = task.load_train() if need.split == "train" else task.load(need.split, need.language)
        return len(data)
    except Exception as exc:  # noqa: BLE001 - every data problem is reported the same way
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if not first.startswith(f"task {need.task}"):
            first = f"task {need.task}: {need.split} split for language {need.language!r}: {first}"
        raise SpecError(need.field, first, source) from None


def prepare_study(spec: Spec) -> None:
    """Prepare every task once, then resolve every needed split; the first that cannot be loaded
    stops the study (exit 2 through the CLI) before a trial, a Ray cluster or an MLflow run starts."""
    tasks: dict[str, Task] = {}
    for name in study_tasks(spec):
        tasks[name] = build_task(name, task_options(spec, name))
        tasks[name].prepare()
    start = time.monotonic()
    needs = study_needs(spec)
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a failure is one line; progress is logged per split instead
    try:
        for need in needs:
            size = resolve(tasks[need.task], need, spec.source)
            log.debug("data: %s %s %s: %d examples", need.task, need.split, need.language, size)
    finally:
        if shown:
            datasets.enable_progress_bars()
    log.info("data: %d splits of %d tasks resolved in %.1f s", len(needs), len(tasks),
             time.monotonic() - start)
    if spec.model == TINY_MODEL:
        from trainables.model import resolve_model_path  # torch only when a model is built

        log.info("model: %s", resolve_model_path(TINY_MODEL, spec.cache_dir))
