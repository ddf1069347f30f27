"""Which tasks make up XTREME and XTREME-R, which languages each averages, and by which metric.
Hard-coded by task name here, in one place, until task declarations carry benchmark membership.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence

from trainables.tasks import task_info

#: benchmark -> its task slots, each the task names that fill it (aliases)
BENCHMARKS: dict[str, tuple[tuple[str, ...], ...]] = {
    "XTREME": (("xnli",), ("pawsx",), ("udpos",), ("panx", "wikiann"), ("xquad",), ("mlqa",),
               ("tydiqa",), ("bucc",), ("tatoeba",)),
    "XTREME-R": (("xnli",), ("xcopa",), ("udpos",), ("panx", "wikiann"), ("xquad",), ("mlqa",),
                 ("tydiqa",), ("mewslix",), ("lareqa",), ("tatoeba",)),
}
#: the metric a benchmark averages for a task, where it is not the task's main metric
QA_TASKS = ("xquad", "mlqa", "tydiqa")
BENCHMARK_METRIC = {**{t: "em_f1" for t in QA_TASKS}, "udpos": "f1", "panx": "f1",
                    "wikiann": "f1", "bucc": "f1"}
#: the name of each benchmark's language set in a task's ``TaskInfo.language_sets``
BENCHMARK_SETS = {"XTREME": "xtreme", "XTREME-R": "xtreme_r"}


def _benchmark_languages() -> dict[str, dict[str, tuple[str, ...]]]:
    """Benchmark -> task -> the languages it averages: the task's language set of that name,
    else all its languages. They are google-research/xtreme evaluate.py's
    ``XTREME_TASK2LANGS`` / ``XTREME_R_TASK2LANGS`` (checked against it; evaluate.py lists no
    LAReQA languages, and XTREME-R scores XQuAD-R's 11). ``wikiann`` stands in for PAN-X."""
    lists: dict[str, dict[str, tuple[str, ...]]] = {}
    for bench, slots in BENCHMARKS.items():
        lists[bench] = {}
        for names in slots:
            info = task_info(names[0])
            langs = dict(info.language_sets).get(BENCHMARK_SETS[bench], info.languages)
            lists[bench].update({name: tuple(langs) for name in names})
    return lists


BENCHMARK_LANGUAGES = _benchmark_languages()


def list_average(scores: dict[str, float], langs: Sequence[str],
                 fallback: float | None = None) -> dict | None:
    """``{"score", "missing"}``: the mean of per-language ``scores`` over a benchmark's language
    list and the list's languages they lack. Without any of them, ``fallback`` (an average over
    unknown languages) with every language missing; None when there is neither."""
    have = [scores[lang] for lang in langs if lang in scores]
    missing = [lang for lang in langs if lang not in scores]
    if have:
        return {"score": statistics.fmean(have), "missing": missing}
    if fallback is not None:
        return {"score": float(fallback), "missing": list(langs)}
    return None
