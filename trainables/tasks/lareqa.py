"""LAReQA on XQuAD-R (Roy et al., 2020): language-agnostic answer-sentence retrieval, 11 languages.

A trained retrieval task (family ``dual_encoder``), as in XTREME-R: fine-tuned on English SQuAD
v1.1 (query = question, candidate = the sentence holding the answer followed by its paragraph,
as the official ``candidate_text``), evaluated by mAP@20. For
a language's test, its questions are the queries and the pool holds **every sentence of every
language's** XQuAD-R contexts; a question's relevant candidates are its answer sentence in all
11 languages (XQuAD-R questions share ids across languages). ``dev`` for model selection is an
English pool built the same way from the SQuAD v1.1 dev set.

Data: ``data_dir`` with ``train-v1.1.json`` / ``dev-v1.1.json`` (SQuAD) and ``xquad-r/<lang>.json``
(or ``<lang>.json``) in SQuAD format; sentences come from a paragraph's ``sentence_breaks``
([start, end] pairs, as distributed) or, when absent, a punctuation split. Hub:
``rajpurkar/squad`` and ``google-research-datasets/xquad_r`` config ``<lang>`` split validation.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from trainables.formats import first_existing
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo

if TYPE_CHECKING:
    import datasets

_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f\u0964])\s+|(?<=[\u3002\uff01\uff1f])")


def sentence_spans(context: str, breaks: list | None = None) -> list[tuple[int, int]]:
    """[start, end) character spans of the context's sentences."""
    if breaks:
        return [(int(s), int(e)) for s, e in breaks]
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(context):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(context):
        spans.append((start, len(context)))
    return spans or [(0, len(context))]


def candidate_text(sentence: str, context: str) -> str:
    """A candidate as the official model reads it: the sentence, then its whole paragraph, with
    no separator and newlines removed (XTREME's ``processors/lareqa.py`` for training and
    ``evaluate_retrieval.py``, task ``lareqa``, for evaluation)."""
    return (sentence + context).replace("\n", "")


def answer_sentences(paragraphs: Iterable[dict]) -> tuple[list[str], dict[str, tuple[str, list[int]]]]:
    """All candidates (``candidate_text`` of every sentence of every paragraph), and for each
    question id its text and the indices of its answer sentences.

    As ``utils_lareqa.generate_examples`` / ``load_data``: the answer sentence is the one whose
    span holds the answer start (a question whose answer starts in no sentence is left out),
    and every sentence of the paragraph with the same text is relevant.
    """
    candidates: list[str] = []
    questions: dict[str, tuple[str, list[int]]] = {}
    for para in paragraphs:
        context = para["context"]
        spans = sentence_spans(context, para.get("sentence_breaks"))
        offset = len(candidates)
        texts = [context[s:e] for s, e in spans]
        candidates += [candidate_text(t, context) for t in texts]
        for qa in para["qas"]:
            answers = qa.get("answers") or []
            if not answers:
                continue
            start = int(answers[0]["answer_start"])
            hit = next((i for i, (s, e) in enumerate(spans) if s <= start < e), None)
            if hit is None:
                continue
            same = [offset + i for i, t in enumerate(texts) if t == texts[hit]]
            questions[str(qa["id"])] = (qa["question"], same)
    return candidates, questions


def hub_paragraphs(data) -> list[dict]:
    """Flat hub rows (one per question) regrouped into SQuAD paragraphs."""
    by_context: dict[str, dict] = {}
    for row in data:
        para = by_context.setdefault(row["context"], {"context": row["context"], "qas": []})
        answers = [{"answer_start": s, "text": t}
                   for s, t in zip(row["answers"]["answer_start"], row["answers"]["text"])]
        para["qas"].append({"id": row["id"], "question": row["question"], "answers": answers})
    return list(by_context.values())


@register
class Lareqa(Task):
    info = TaskInfo(
        name="lareqa", family="dual_encoder", languages=TASK_LANGUAGES["lareqa"], main_metric="map_at_20",
        source="LAReQA / XQuAD-R (Roy et al., 2020); English training data SQuAD v1.1",
        hub_id="google-research-datasets/xquad_r:{lang}", intermediate=False, benchmark_slot="lareqa",
        description="answer-sentence retrieval from a multilingual pool (mAP@20); zero-shot from English",
    )
    #: ties as utils_lareqa.mean_avg_prec_at_k (``scores.argsort()[::-1]``)
    ranking = "lareqa"

    def _squad_paragraphs(self, split: str, language: str, path: Path | None, hub: tuple) -> list[dict]:
        if path is None:
            data = self.hub_dataset(*hub, language)
            return hub_paragraphs(data)
        path = self.require_file(path, split, language)
        try:
            articles = json.loads(path.read_text(encoding="utf-8"))["data"]
            return [p for article in articles for p in article["paragraphs"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: "
                                f"{path} is not SQuAD JSON ({type(exc).__name__}: {exc})") from None

    def _english(self, split: str) -> list[dict]:
        name = "train-v1.1.json" if split == "train" else "dev-v1.1.json"
        path = self.data_path(name) if self.options.data_dir else None
        hub_split = "train" if split == "train" else "validation"
        return self._squad_paragraphs(split, "en", path, ("rajpurkar/squad", None, hub_split))

    def _xquad_r(self, split: str, language: str) -> list[dict]:
        path = None
        if self.options.data_dir:
            root = self.data_path()
            path = first_existing(root / "xquad-r" / f"{language}.json", root / f"{language}.json")
        return self._squad_paragraphs(split, language, path,
                                      ("google-research-datasets/xquad_r", language, "validation"))

    def load(self, split: str, language: str) -> datasets.Dataset:
        if split == "train" or (split == "dev" and language == "en"):
            if language != "en":
                raise TaskDataError(f"task {self.name}: no train split for language {language!r}")
            sentences, questions = answer_sentences(self._english(split))
            if split == "train":
                import datasets

                return datasets.Dataset.from_dict(
                    {"query": [q for q, _ in questions.values()],
                     "candidate": [sentences[i[0]] for _, i in questions.values()]})
            from trainables.families.retrieval import pool_dataset  # torch: not in the driver

            return pool_dataset([q for q, _ in questions.values()], sentences,
                                [i for _, i in questions.values()])
        if split != "test" and split != "dev":
            raise TaskDataError(f"task {self.name}: unknown split {split!r}")
        if language not in self.info.languages:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r}: "
                                f"not a LAReQA language {self.info.languages}")
        # XQuAD-R has one split: dev and test of a non-English language are the same pool
        pool: list[str] = []
        answer_of: dict[str, list[int]] = {}
        own: dict[str, str] = {}
        for lang in self.info.languages:
            sentences, questions = answer_sentences(self._xquad_r(split, lang))
            for qid, (question, indices) in questions.items():
                answer_of.setdefault(qid, []).extend(len(pool) + i for i in indices)
                if lang == language:
                    own[qid] = question
            pool += sentences
        from trainables.families.retrieval import pool_dataset  # torch: not in the driver

        return pool_dataset(list(own.values()), pool, [sorted(answer_of[q]) for q in own])
