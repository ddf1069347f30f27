"""Which tasks make up XTREME and XTREME-R, which languages each averages, and by which metric:
the report's view of ``trainables.benchmarks`` (the benchmarks' slots) and of what each task
declares on its ``TaskInfo`` (slot, aliases, benchmark metric)."""
from __future__ import annotations

import statistics
from collections.abc import Sequence

from trainables.benchmarks import benchmark_language_sets, benchmark_metrics, benchmark_slots
from trainables.tasks import task_info

#: benchmark -> its task slots, each the task names that fill it (aliases), as tasks declare them
BENCHMARKS: dict[str, tuple[tuple[str, ...], ...]] = benchmark_slots()
#: the metric a benchmark averages for a task, where it is not the task's main metric
BENCHMARK_METRIC: dict[str, str] = benchmark_metrics()
#: the name of each benchmark's language set in a task's ``TaskInfo.language_sets``
BENCHMARK_SETS: dict[str, str] = benchmark_language_sets()


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
