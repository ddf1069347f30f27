"""Mewsli-X (Ruder et al., 2021): cross-lingual entity linking as retrieval, 11 languages.

A trained retrieval task (family ``dual_encoder``), as in XTREME-R: fine-tuned on English
Wikipedia mention/entity pairs, evaluated by mAP@20: a WikiNews mention in language xx (the
query) must retrieve its entity's description from the fixed candidate set (English and other
languages' descriptions). A query is ``"<mention> : <context>"``: the mention comes first so
truncation keeps it.

``data_dir`` (JSON lines, as prepared by XTREME-R's download script):

* ``candidate_set_entities.jsonl``: ``{entity_id, description}`` (or ``text``);
* ``wikinews_mentions-dev.jsonl`` / ``wikinews_mentions-test.jsonl``: evaluation mentions;
* ``wikipedia_pairs-train.jsonl`` / ``wikipedia_pairs-dev.jsonl``: English training pairs and
  the English dev pool (its candidates are the descriptions of its own rows' entities).

A mention row is flat ``{language, mention, context, entity_id}`` (``lang`` accepted) or nested
as distributed (``contextual_mention: {mention: {mention_span: {text}}, context: {text,
language}}``); a training row also carries its entity's ``description`` (flat, or
``entity: {entity_id, description}``). Hub: ``izhx/mewsli-x`` (configs ``wikinews_mentions``,
``wikipedia_pairs``, ``candidate_entities``) in the same row format.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo

if TYPE_CHECKING:
    import datasets

HUB = "izhx/mewsli-x"


def _get(row: dict, *paths: str):
    """The first of several dotted paths present in a (nested) row."""
    for path in paths:
        value = row
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def mention_fields(row: dict) -> tuple[str | None, str | None, str | None, str | None]:
    """(language, query text, entity id, description) of a flat or nested Mewsli-X row."""
    mention = _get(row, "contextual_mention.mention.mention_span.text", "mention.mention_span.text", "mention")
    context = _get(row, "contextual_mention.context.text", "context.text", "context")
    language = _get(row, "contextual_mention.context.language", "context.language", "language", "lang")
    entity = _get(row, "entity_id", "entity.entity_id")
    description = _get(row, "entity.description", "description")
    query = None if mention is None else (f"{mention} : {context}" if context else str(mention))
    return language, query, None if entity is None else str(entity), description


@register
class MewsliX(Task):
    info = TaskInfo(
        name="mewslix", family="dual_encoder", languages=TASK_LANGUAGES["mewslix"], main_metric="map_at_20",
        source="Mewsli-X (Ruder et al., 2021); English Wikipedia training pairs", hub_id=HUB,
        benchmark_slot="mewslix",
        intermediate=False,
        description="entity linking of news mentions to a multilingual candidate set (mAP@20)",
    )
    #: ties as the official eval: faiss IndexFlatIP search (evaluate_retrieval.py, task mewslix)
    ranking = "mewslix"

    def _rows(self, name: str, split: str, language: str, hub: tuple[str, str]) -> list[dict]:
        if not self.options.data_dir:
            return list(self.hub_dataset(HUB, hub[0], hub[1], language))
        path: Path = self.require_file(self.data_path(name), split, language)
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: "
                                        f"{path}:{number} is not JSON") from None
        return rows

    def _pairs(self, split: str) -> list[tuple[str, str, str]]:
        """(query, entity id, description) of the English Wikipedia pairs."""
        rows = self._rows(f"wikipedia_pairs-{split}.jsonl", split, "en", ("wikipedia_pairs", split
                          if split == "train" else "validation"))
        out = []
        for number, row in enumerate(rows, 1):
            _, query, entity, description = mention_fields(row)
            if query is None or entity is None or description is None:
                raise TaskDataError(f"task {self.name}: {split} split for language 'en': row {number} "
                                    f"lacks mention, entity_id or description")
            out.append((query, entity, description))
        return out

    def load(self, split: str, language: str) -> datasets.Dataset:
        if split not in ("train", "dev", "test"):
            raise TaskDataError(f"task {self.name}: unknown split {split!r}")
        if split == "train":
            if language != "en":
                raise TaskDataError(f"task {self.name}: no train split for language {language!r}")
            import datasets

            pairs = self._pairs("train")
            return datasets.Dataset.from_dict({"query": [p[0] for p in pairs],
                                               "candidate": [p[2] for p in pairs]})
        if split == "dev" and language == "en":
            pairs = self._pairs("dev")
            entities = list(dict.fromkeys(p[1] for p in pairs))
            index = {e: i for i, e in enumerate(entities)}
            text = {p[1]: p[2] for p in pairs}
            from trainables.families.retrieval import pool_dataset  # torch: not in the driver

            return pool_dataset([p[0] for p in pairs], [text[e] for e in entities],
                                [[index[p[1]]] for p in pairs])
        if language not in self.info.languages:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: "
                                f"not a Mewsli-X language {self.info.languages}")
        candidates = self._rows("candidate_set_entities.jsonl", split, language, ("candidate_entities", "test"))
        ids = [str(_get(c, "entity_id", "id")) for c in candidates]
        texts = [_get(c, "description", "text") or "" for c in candidates]
        index = {e: i for i, e in enumerate(ids)}
        hub_split = "test" if split == "test" else "validation"
        mentions = self._rows(f"wikinews_mentions-{split}.jsonl", split, language,
                              ("wikinews_mentions", hub_split))
        queries, relevant = [], []
        for row in mentions:
            lang, query, entity, _ = mention_fields(row)
            if lang != language or query is None:
                continue
            queries.append(query)
            relevant.append([index[entity]] if entity in index else [])
        if not queries:
            raise TaskDataError(f"task {self.name}: {split} split has no mentions in language {language!r}")
        from trainables.families.retrieval import pool_dataset  # torch: not in the driver

        return pool_dataset(queries, texts, relevant)
