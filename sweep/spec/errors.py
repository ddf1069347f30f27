"""How a spec problem is reported: one ``SpecError`` naming the field path, with a "did you
mean" for near misses; pydantic's and the plug-in validators' messages are translated to it."""
from __future__ import annotations

import difflib

from pydantic import ValidationError


class SpecError(ValueError):
    """A spec problem, with the field path that caused it."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.problem = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}" if field else f"{where}{message}")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join_field(path: str, message: str) -> str:
    """``<field>: <problem>`` messages from validators become ``path.field``."""
    field_name = message.split(":", 1)[0].strip() if ":" in message else ""
    return f"{path}.{field_name}" if field_name and " " not in field_name else path


def problem_of(message: str) -> str:
    """The problem part of a ``<field>: <problem>`` message (all of any other message)."""
    head, _, rest = message.partition(":")
    return rest.strip() if rest and " " not in head.strip() else message


def validator_error(path: str, exc: ValueError) -> SpecError:
    """A plug-in validator's ``ValueError`` (adversarial methods, perturbations, language
    attributes) as the ``SpecError`` of the field it names under ``path``."""
    return SpecError(join_field(path, str(exc)), problem_of(str(exc)))


# pydantic inserts the union member's name into error locations; drop it from paths
_UNION_TAGS = {"str", "list[str]", "TargetEntry", "int", "float", "function-after[_name_is_a_slug(), str]"}


def first_error(exc: ValidationError) -> SpecError:
    errors = exc.errors()
    err = errors[0]
    # In a union (a name or a mapping) report the member that got furthest: for a mapping that is
    # the error inside it (targets[0].task), not "input should be a valid string".
    tag = next((i for i, p in enumerate(err["loc"]) if isinstance(p, str) and p in _UNION_TAGS), None)
    if tag is not None:
        err = max((e for e in errors if e["loc"][:tag] == err["loc"][:tag] and len(e["loc"]) > tag
                   and e["loc"][tag] in _UNION_TAGS), key=lambda e: len(e["loc"]))
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f", got {err['input']!r}"
    return SpecError(path, message[0].lower() + message[1:] if message else message)
