"""A trial's zero-shot evaluation: the selected model on each language's test split, clean and
under the study's evaluation-time perturbations."""
from __future__ import annotations

import logging

import numpy as np

from trainables.contract import metric_key
from trainables.families import get_family
from trainables.perturb import apply_perturbation, build_perturbation
from trainables.records import perturbation_label
from trainables.tasks.base import Task
from trainables.train import NonFiniteError

log = logging.getLogger(__name__)


def evaluate_languages(task: Task, model, tokenizer, languages: tuple[str, ...], hp: dict, *,
                       perturbations=(), perturbation_seed: int = 0, ctx=None) -> tuple[dict, dict]:
    """Zero-shot metrics per language as ``<task>/<metric>/<lang>`` plus ``/avg`` over languages,
    and which rank evaluated each language.

    Each evaluation-time perturbation adds ``<task>.<label>/<metric>/<lang>`` on the perturbed
    test set and ``<task>.<label>/drop/<lang>``, the clean main metric minus the perturbed one.
    A perturbation that cannot run in a language (no ``{language}`` lexicon file for it) is
    skipped there with a log line: no metric, and its ``/avg`` is over the languages it ran in.

    The ranks of a multi-worker trial split the languages (rank r takes every W-th from r) and
    gather the results, so each language is evaluated once. A non-finite main metric fails
    the trial (``NonFiniteError``): it must never reach the table as a score.
    """
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    model.eval()
    applicable = _applicable_perturbations(task, perturbations)
    mine = {lang: _language_metrics(task, model, tokenizer, lang, hp, applicable, perturbation_seed)
            for lang in languages[rank::world]}
    per_language = _gathered(mine, world)
    missing = [lang for lang in languages if lang not in per_language]
    if missing:
        raise RuntimeError(f"{task.name}: no rank evaluated {' '.join(missing)}")
    metrics: dict[str, float] = {}
    values: dict[str, list[float]] = {}
    for lang in languages:
        for key, value in per_language[lang][0].items():
            metrics[key] = value
            prefix = key.rsplit("/", 1)[0]
            if prefix != f"{task.name}/n":
                values.setdefault(prefix, []).append(value)
    metrics.update({f"{prefix}/avg": float(np.mean(v)) for prefix, v in values.items()})
    return metrics, {lang: per_language[lang][1] for lang in languages}


def _gathered(mine: dict, world: int) -> dict:
    """{language: (metrics, rank)} from every rank (an all-gather; this rank's alone if single)."""
    import torch.distributed as dist

    rank = dist.get_rank() if world > 1 else 0
    tagged = {lang: (metrics, rank) for lang, metrics in mine.items()}
    if world == 1:
        return tagged
    everything: list = [None] * world
    dist.all_gather_object(everything, tagged)
    return {lang: item for part in everything for lang, item in part.items()}


def _language_metrics(task: Task, model, tokenizer, lang: str, hp: dict, perturbations: list[dict],
                      perturbation_seed: int) -> dict[str, float]:
    """One language's clean metrics (``<task>/<metric>/<lang>``) and those under each of the
    ``perturbations`` that apply to the task."""
    family = get_family(task.info.family)
    main = task.info.main_metric
    data = task.load("test", lang)
    result = _evaluate(family, task, model, data, tokenizer, hp)
    if not np.isfinite(result.get(main, 0.0)):
        raise NonFiniteError(f"{task.name}/{main}/{lang} is {result[main]} on {len(data)} test examples")
    metrics: dict[str, float] = {}
    n = result.pop("n", None)
    if n is not None:
        metrics[f"{task.name}/n/{lang}"] = n
    metrics.update({metric_key(task.name, name, lang): value for name, value in result.items()})
    log.info("%s %s: %s", task.name, lang, {k: round(v, 4) for k, v in result.items()})
    for config in perturbations:
        label = f"{task.name}.{perturbation_label(config)}"
        perturbation = build_perturbation(config, language=lang)
        missing = perturbation.unavailable()
        if missing:  # e.g. no `{language}` lexicon for this language (English, often)
            log.info("%s %s: perturbation %s skipped: %s", task.name, lang, label, missing)
            continue
        # a model-aware perturbation (attack) looks at the model under evaluation first
        perturbation.prepare(model, task, tokenizer, max_length=hp.get("max_length", 128),
                             batch_size=hp.get("eval_batch_size", 64))
        perturbed = apply_perturbation(data, task.info.family, perturbation, seed=perturbation_seed)
        scores = _evaluate(family, task, model, perturbed, tokenizer, hp)
        scores.pop("n", None)
        scores["drop"] = result[main] - scores[main]
        metrics.update({metric_key(label, name, lang): value for name, value in scores.items()})
        log.info("%s %s under %s: %s", task.name, lang, label, {k: round(v, 4) for k, v in scores.items()})
    return metrics


def _evaluate(family, task, model, data, tokenizer, hp: dict) -> dict:
    with model.autocast():  # the training precision (also covers families that call the encoder directly)
        return family.evaluate(task, model, data, tokenizer, batch_size=hp.get("eval_batch_size", 64),
                               max_length=hp.get("max_length", 128))


def _applicable_perturbations(task: Task, perturbations) -> list[dict]:
    """The configs that apply to the task's family (retrieval targets have none): others are
    skipped with a log line, so one study can perturb classification and QA targets alike."""
    out = []
    for config in perturbations or ():
        families = build_perturbation(config, language="en").families
        if task.info.family in families:
            out.append(dict(config))
        else:
            log.info("perturbation %s does not apply to %s (%s): skipped", config.get("name"),
                     task.name, task.info.family)
    return out
