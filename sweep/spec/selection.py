"""What a study runs: its intermediate entries, its targets and their languages, and the task
options and groups that refer to them, checked against the task registry."""
from __future__ import annotations

from sweep.spec.blocks import NONE_TASK, TargetEntry, TaskOptionsBlock
from sweep.spec.errors import SpecError, did_you_mean, validator_error
from sweep.spec.model import Target
from trainables.tasks import task_info


def check_intermediate(entries: list, names: list[str]) -> tuple[tuple[str, ...], ...]:
    if not entries:
        raise SpecError("intermediate", f"give at least one entry ('{NONE_TASK}' for the baseline)")
    usable = [n for n in names if task_info(n).intermediate and task_info(n).trainable]
    seen: set[tuple[str, ...]] = set()
    out = []
    for i, entry in enumerate(entries):
        path = f"intermediate[{i}]"
        group = [entry] if isinstance(entry, str) else list(entry)
        if isinstance(entry, list):
            if len(entry) < 2:
                raise SpecError(path, "a multi-task entry needs at least two tasks")
            if len(set(entry)) != len(entry):
                raise SpecError(path, f"repeated task in multi-task entry: {entry}")
        for j, name in enumerate(group):
            where = path if isinstance(entry, str) else f"{path}[{j}]"
            if name == NONE_TASK:
                if isinstance(entry, list):
                    raise SpecError(where, f"'{NONE_TASK}' cannot be part of a multi-task entry")
                continue
            if name not in names:
                raise SpecError(where, f"unknown task '{name}'" + did_you_mean(name, names + [NONE_TASK]))
            if name not in usable:
                raise SpecError(where, f"task '{name}' cannot be an intermediate task "
                                       "(it has no English training data)")
        key = () if group == [NONE_TASK] else tuple(sorted(group))
        if key in seen:
            raise SpecError(path, f"repeated intermediate entry: {entry}")
        seen.add(key)
        out.append(key)
    return tuple(out)


def check_mixing(groups: tuple[tuple[str, ...], ...], options: dict[str, TaskOptionsBlock]) -> None:
    """Multi-task sampling probabilities are all-or-nothing within an intermediate entry."""
    for i, group in enumerate(groups):
        given = [t for t in group if t in options and options[t].probability is not None]
        if given and len(given) != len(group):
            missing = [t for t in group if t not in given]
            raise SpecError(f"tasks.{missing[0]}.probability",
                            f"intermediate[{i}] mixes {'+'.join(group)} with given probabilities "
                            f"for {', '.join(given)}: give one for every task of the entry or none")


def check_required_options(groups, targets, options: dict[str, TaskOptionsBlock]) -> None:
    used = [t for g in groups for t in g] + [t.task for t in targets]
    for name in dict.fromkeys(used):
        for option in task_info(name).required_options:
            if name not in options or getattr(options[name], option) is None:
                raise SpecError(f"tasks.{name}.{option}", f"task '{name}' needs this option "
                                                          f"({task_info(name).description})")


def _select_languages(task: str, info, criteria: dict, path: str) -> tuple[str, ...]:
    """A task's languages (or one of its sets, ``from:``) filtered by language attributes."""
    from sweep.languages import select_languages

    sets = {"all": info.languages, **dict(info.language_sets)}
    base = criteria.pop("from", "all")
    if base not in sets:
        raise SpecError(f"{path}.from", f"'{base}' is not a language set of task '{task}'"
                                        + did_you_mean(str(base), list(sets)) + f"; sets: {', '.join(sets)}")
    if not criteria:
        raise SpecError(path, "give at least one attribute to select by (e.g. resource_class: '<=2')")
    try:
        chosen = select_languages(tuple(sets[base]), criteria)
    except ValueError as exc:
        raise validator_error(path, exc) from None
    except KeyError as exc:  # a language without metadata (the toy languages)
        raise SpecError(path, f"cannot select languages of task '{task}' by attributes: "
                              f"{exc.args[0] if exc.args else exc}") from None
    if not chosen:
        raise SpecError(path, f"no language of task '{task}' matches {criteria}")
    return tuple(chosen)


def check_targets(entries: list, names: list[str]) -> tuple[Target, ...]:
    if not entries:
        raise SpecError("targets", "give at least one target task")
    usable = [n for n in names if task_info(n).target]
    out: list[Target] = []
    for i, entry in enumerate(entries):
        path = f"targets[{i}]"
        entry = TargetEntry(task=entry) if isinstance(entry, str) else entry
        tpath = path if isinstance(entries[i], str) else f"{path}.task"
        if entry.task not in names:
            raise SpecError(tpath, f"unknown task '{entry.task}'" + did_you_mean(entry.task, names))
        if entry.task not in usable:
            raise SpecError(tpath, f"task '{entry.task}' cannot be a target task")
        info = task_info(entry.task)
        if entry.languages is None:
            languages = info.languages
        elif isinstance(entry.languages, dict):
            languages = _select_languages(entry.task, info, dict(entry.languages), f"{path}.languages")
        elif isinstance(entry.languages, str):
            sets = {"all": info.languages, **dict(info.language_sets)}
            if entry.languages not in sets:
                raise SpecError(f"{path}.languages",
                                f"'{entry.languages}' is not a language set of task '{entry.task}'"
                                + did_you_mean(entry.languages, list(sets))
                                + f"; give a list of languages or one of: {', '.join(sets)}")
            languages = tuple(sets[entry.languages])
        else:
            if not entry.languages:
                raise SpecError(f"{path}.languages", "give at least one language (or leave out "
                                                     "the field for all of the task's languages)")
            for j, lang in enumerate(entry.languages):
                if lang not in info.languages:
                    raise SpecError(f"{path}.languages[{j}]",
                                    f"'{lang}' is not a language of task '{entry.task}'"
                                    + did_you_mean(lang, info.languages)
                                    + f"; it has: {' '.join(info.languages)}")
            if len(set(entry.languages)) != len(entry.languages):
                raise SpecError(f"{path}.languages", f"repeated language: {entry.languages}")
            languages = tuple(entry.languages)
        if any(t.task == entry.task for t in out):
            raise SpecError(path, f"target '{entry.task}' is listed twice")
        out.append(Target(entry.task, languages))
    return tuple(out)


def check_groups(raw: dict[str, list], intermediate: tuple[tuple[str, ...], ...]
                  ) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for group, entries in raw.items():
        for i, entry in enumerate(entries):
            path = f"groups.{group}[{i}]"
            key = () if entry == NONE_TASK else tuple(sorted([entry] if isinstance(entry, str) else entry))
            if key not in intermediate:
                shown = [("+".join(k) or NONE_TASK) for k in intermediate]
                raise SpecError(path, f"{entry!r} is not an intermediate entry of this study"
                                      + did_you_mean("+".join(key) or NONE_TASK, shown))
            if key in out:
                raise SpecError(path, f"{entry!r} is already in group '{out[key]}'")
            out[key] = group
    return out
