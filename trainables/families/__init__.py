"""Task families: how a family's examples become features, which head it uses, how it is scored.

A task names its family; the training loop only talks to the ``Family`` interface.
"""
from __future__ import annotations

from trainables.families.base import Family
from trainables.families.classification import Classification
from trainables.families.retrieval import Retrieval
from trainables.families.tagging import Tagging

_FAMILIES: dict[str, Family] = {f.name: f for f in (Classification(), Tagging(), Retrieval())}


def get_family(name: str) -> Family:
    return _FAMILIES[name]


__all__ = ["Family", "get_family"]
