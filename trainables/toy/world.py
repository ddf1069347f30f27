"""A synthetic "toy XTREME": four small languages, their corpora and task datasets on disk.

This is the offline demo and test bed of the sweep engine, so its numbers must mean something:
the languages share meanings, proper names, digits, punctuation and some loanwords (the
anchors multilingual pretraining exploits), a code-switched corpus mixes their words in shared
contexts, and every
task label is computed from sentence *meanings* (see ``trainables.toy.grammar``). A model
pretrained on the corpus and fine-tuned on English transfers to the other languages; one that is
not pretrained does much worse.

Files use the upstream formats (JSON lines for XNLI/PAWS-X-like pairs, CoNLL-U for UD POS,
the XTREME Tatoeba line-aligned files), so the same readers serve toy and real data.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from trainables.toy.grammar import (
    NP,
    Event,
    Tok,
    chunk_tags,
    code_switch,
    heads,
    normalise_negation,
    pick,
    render,
    sample_adjs,
    sample_event,
    sample_noun_np,
    sample_pp,
    sample_sentence,
    sample_topic,
    text,
    verb_accepts,
)
from trainables.toy.lexicon import (
    ADVS,
    DERIVED_LANGUAGES,
    LEXICON,
    NOUNS_BY_CLASS,
    NUMERALS,
    PERSON_NAMES,
    SHARED_ANCHORS,
    TOY_LANGUAGES,
    VERBS,
)

logger = logging.getLogger(__name__)

#: bump when the generator's output changes, so that stale builds are rebuilt
GENERATOR_VERSION = 7
NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
#: toy_mnli's training set is this many times toy_xnli's: an intermediate task is worth running
#: when it has far more data than the target (MNLI's 393k pairs against most targets' thousands)
MNLI_SIZE_FACTOR = 4
#: probability that a content word of a mixed-corpus sentence is re-drawn in a random toy
#: language (its own included); high, because in the toy world a word's context says little about
#: which concept it is, so the alignment comes from words being interchangeable in one context
CODE_SWITCH_RATE = 0.8
#: the same for function words (articles, adpositions, pronouns, the negation particle)
FUNCTION_SWITCH_RATE = 0.6

__all__ = [
    "NLI_LABELS",
    "SHARED_ANCHORS",
    "TOY_LANGUAGES",
    "lexicon_vocabulary",
    "read_manifest",
    "write_toy_xtreme",
]


def lexicon_vocabulary(lang: str) -> set[str]:
    """Every word form of ``lang`` other than the shared anchors (names, digits, punctuation)."""
    return LEXICON.vocabulary(lang)


# ------------------------------------------------------------------------------------------------
# Meaning-level task generators


def _modifiers(ev: Event, *, adjectives_only: bool) -> list[tuple[str, ...]]:
    """Droppable modifiers of an event: adjectives of its nouns, its PP and its adverb."""
    mods: list[tuple[str, ...]] = []
    for role in ("agent", "patient"):
        np = getattr(ev, role)
        if np.kind == "noun":
            mods += [("adj", role, a) for a in np.adjs]
    if not adjectives_only:
        if ev.pp is not None:
            mods.append(("pp",))
        if ev.adv is not None:
            mods.append(("adv",))
    return mods


def _drop(ev: Event, drops: list[tuple[str, ...]]) -> Event:
    for mod in drops:
        if mod[0] == "adj":
            np: NP = getattr(ev, mod[1])
            adjs = tuple(a for a in np.adjs if a != mod[2])
            ev = replace(ev, **{mod[1]: replace(np, adjs=adjs, adj_and=np.adj_and and len(adjs) == 2)})
        elif mod[0] == "pp":
            ev = replace(ev, pp=None)
        else:
            ev = replace(ev, adv=None, adv_initial=False)
    return ev


def _additions(ev: Event, *, adjectives_only: bool) -> list[tuple[str, ...]]:
    """Information that can be added without contradicting the event."""
    adds: list[tuple[str, ...]] = []
    for role in ("agent", "patient"):
        np = getattr(ev, role)
        if np.kind == "noun" and not np.adjs:
            adds.append(("adj", role))
    if not adjectives_only:
        if ev.pp is None:
            adds.append(("pp",))
        if ev.adv is None:
            adds.append(("adv",))
    return adds


def _add(ev: Event, adds: list[tuple[str, ...]], rng: random.Random, topic: int) -> Event:
    for add in adds:
        if add[0] == "adj":
            np: NP = getattr(ev, add[1])
            ev = replace(ev, **{add[1]: replace(np, adjs=sample_adjs(rng, np.cls, 1, topic))})
        elif add[0] == "pp":
            ev = replace(ev, pp=sample_pp(rng, topic))
        else:
            ev = replace(ev, adv=pick(rng, ADVS, topic), adv_initial=rng.random() < 0.4)
    return ev


def _subset(rng: random.Random, items: list, *, min_size: int = 1) -> list:
    k = rng.randint(min_size, len(items))
    return rng.sample(items, k)


def _nli_pair(rng: random.Random, label: str) -> tuple[Event, Event]:
    """A (premise, hypothesis) pair whose label follows from the meanings.

    entailment: the hypothesis drops modifiers (under negation only adjectives, which describe
    definite referents); neutral: it adds information; contradiction: negation flipped,
    agent/patient swapped, another verb or another number (adjectives may be dropped too).
    """
    while True:
        # what the hypothesis adds or changes is drawn from the premise's topic too, so that an
        # off-topic word is no shortcut to the label
        topic = sample_topic(rng)
        premise = sample_event(rng, neg_rate=0.2, pp_rate=0.45, adv_rate=0.4, topic=topic)
        if label == "entailment":
            mods = _modifiers(premise, adjectives_only=premise.neg)
            if not mods:
                continue
            return premise, _drop(premise, _subset(rng, mods))
        if label == "neutral":
            adds = _additions(premise, adjectives_only=premise.neg)
            if not adds:
                continue
            hyp = _add(premise, _subset(rng, adds), rng, topic)
            mods = _modifiers(premise, adjectives_only=premise.neg)
            if mods and rng.random() < 0.3:
                hyp = _drop(hyp, _subset(rng, mods))
            return premise, hyp
        hyp = _contradict(rng, premise, topic)
        if hyp is None:
            continue
        adj_mods = _modifiers(hyp, adjectives_only=True)
        if adj_mods and rng.random() < 0.3:
            hyp = _drop(hyp, _subset(rng, adj_mods))
        return premise, hyp


def _contradict(rng: random.Random, ev: Event, topic: int | None = None) -> Event | None:
    """A contradicting hypothesis, or None if this premise admits none of the chosen kind.

    Under negation only flipping the polarity contradicts ("does not see X" is compatible with
    "does not eat X"), so negated premises get only that kind.
    """
    kinds = ["neg"]
    if not ev.neg:
        kinds.append("verb")
        if ev.agent.kind in ("noun", "name") and ev.patient.kind in ("noun", "name") \
                and ev.patient.cls == "animate" and ev.agent.head != ev.patient.head:
            kinds.append("swap")
        if ev.patient.num is not None:
            kinds.append("num")
    kind = rng.choice(kinds)
    if kind == "neg":
        flipped = replace(ev, neg=not ev.neg)
        if flipped.neg and normalise_negation(flipped) != flipped:
            return None  # an indefinite or a numeral would make the negation non-contradictory
        return flipped
    if kind == "verb":
        choices = [v for v in VERBS if v != ev.verb and verb_accepts(v, ev.patient.cls)]
        return replace(ev, verb=pick(rng, choices, topic))
    if kind == "swap":
        return replace(ev, agent=ev.patient, patient=ev.agent)
    other = rng.choice([n for n in NUMERALS if n != ev.patient.num])
    return replace(ev, patient=replace(ev.patient, num=other))


def _paraphrase_pair(rng: random.Random, label: int) -> tuple[Event, Event]:
    """label 1: same meaning (only surface changes: synonyms chosen at render time, modifier
    order, adverb position); label 0: one argument or the verb changed."""
    topic = sample_topic(rng)
    ev = sample_event(rng, neg_rate=0.15, pp_rate=0.4, adv_rate=0.4, topic=topic)
    other = _reorder(rng, ev) if rng.random() < 0.5 else ev
    if label == 1:
        return ev, other
    r = rng.random()
    if r < 0.35:
        choices = [v for v in VERBS if v != ev.verb and verb_accepts(v, ev.patient.cls)]
        return ev, replace(other, verb=pick(rng, choices, topic))
    role = "agent" if r < 0.7 else "patient"
    np: NP = getattr(other, role)
    new = _other_referent(rng, np, topic)
    return ev, replace(other, **{role: new})


def _other_referent(rng: random.Random, np: NP, topic: int) -> NP:
    if np.kind == "name":
        return replace(np, head=pick(rng, PERSON_NAMES, topic, exclude=(np.head,)))
    if np.kind == "noun":
        return replace(np, head=pick(rng, NOUNS_BY_CLASS[np.cls], topic, exclude=(np.head,)))
    # pronoun or coordination: replace by a fresh noun phrase
    return sample_noun_np(rng, "animate", topic=topic)


def _reorder(rng: random.Random, ev: Event) -> Event:
    """Meaning-preserving reorderings: adjective order and adverb position."""
    if ev.adv is not None and rng.random() < 0.5:
        ev = replace(ev, adv_initial=not ev.adv_initial)
    for role in ("agent", "patient"):
        np: NP = getattr(ev, role)
        if len(np.adjs) == 2:
            ev = replace(ev, **{role: replace(np, adjs=np.adjs[::-1])})
    return ev


# ------------------------------------------------------------------------------------------------
# File writers


def _write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _write_lines(path: Path, lines: Iterable[str]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n


def conllu_block(toks: list[Tok], sent_id: str) -> str:
    """One sentence in CoNLL-U, with multiword-token range lines for fused words."""
    lines = [f"# sent_id = {sent_id}", f"# text = {text(toks)}"]
    head_ids = heads(toks)
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.fuse_next and i + 1 < len(toks):
            nxt = toks[i + 1]
            misc = "_" if nxt.space_after else "SpaceAfter=No"
            lines.append(f"{i + 1}-{i + 2}\t{t.form}{nxt.form}\t_\t_\t_\t_\t_\t_\t_\t{misc}")
            for j in (i, i + 1):
                w = toks[j]
                lines.append(f"{j + 1}\t{w.form}\t{w.lemma}\t{w.upos}\t_\t{w.feats}\t{head_ids[j]}"
                             f"\t{w.deprel}\t_\t_")
            i += 2
            continue
        misc = "_" if t.space_after else "SpaceAfter=No"
        lines.append(f"{i + 1}\t{t.form}\t{t.lemma}\t{t.upos}\t_\t{t.feats}\t{head_ids[i]}"
                     f"\t{t.deprel}\t_\t{misc}")
        i += 1
    return "\n".join(lines) + "\n\n"


def _write_conllu(path: Path, sentences: list[list[Tok]], prefix: str) -> int:
    with path.open("w", encoding="utf-8") as f:
        for i, toks in enumerate(sentences):
            f.write(conllu_block(toks, f"{prefix}-{i}"))
    return len(sentences)


def _balanced_labels(rng: random.Random, n: int, labels: tuple) -> list:
    out = [labels[i % len(labels)] for i in range(n)]
    rng.shuffle(out)
    return out


def _rng(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream per (seed, file): str seeds hash with SHA-512."""
    return random.Random("/".join(str(p) for p in (seed, *parts)))


def _nli_row(label: str, premise: Event, hypothesis: Event, lang: str, rng: random.Random) -> dict:
    """One NLI example as its JSON line: the pair rendered in ``lang`` (premise first)."""
    return {"premise": text(render(premise, lang, rng)), "hypothesis": text(render(hypothesis, lang, rng)),
            "label": label}


def _gen_xnli(out: Path, seed: int, counts: dict[str, int], n_train: int, n_dev: int, n_test: int) -> None:
    d = out / "toy_xnli"
    d.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rng = _rng(seed, "xnli", split)
        pairs = [(label, *_nli_pair(rng, label)) for label in _balanced_labels(rng, n, NLI_LABELS)]
        langs = TOY_LANGUAGES if split == "test" else ("en",)
        for lang in langs:
            srng = _rng(seed, "xnli", split, lang, "surface")
            rows = (_nli_row(label, p, h, lang, srng) for label, p, h in pairs)
            name = f"{split}-{lang}.jsonl"
            counts[f"toy_xnli/{name}"] = _write_jsonl(d / name, rows)


def _gen_mnli(out: Path, seed: int, counts: dict[str, int], n_train: int, n_dev: int) -> None:
    """A large English NLI set (MNLI-like) for intermediate training: toy_xnli's labels and
    meanings, drawn from its own random stream (so none of its pairs is a toy_xnli pair by design)."""
    d = out / "toy_mnli"
    d.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev)):
        rng = _rng(seed, "mnli", split)
        # each pair is drawn and rendered before the next, from the one stream
        rows = (_nli_row(label, *_nli_pair(rng, label), "en", rng)
                for label in _balanced_labels(rng, n, NLI_LABELS))
        counts[f"toy_mnli/{split}-en.jsonl"] = _write_jsonl(d / f"{split}-en.jsonl", rows)


def _gen_paraphrase(out: Path, seed: int, counts: dict[str, int], n_train: int, n_dev: int) -> None:
    d = out / "toy_paraphrase"
    d.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev)):
        rng = _rng(seed, "paraphrase", split)
        rows = []
        for label in _balanced_labels(rng, n, (0, 1)):
            while True:  # a positive must differ on the surface: resample until it does
                a, b = _paraphrase_pair(rng, label)
                s1 = text(render(a, "en", rng, synonym_rate=0.3))
                s2 = text(render(b, "en", rng, synonym_rate=0.5))
                if s1 != s2:
                    break
            rows.append({"sentence1": s1, "sentence2": s2, "label": label})
        counts[f"toy_paraphrase/{split}-en.jsonl"] = _write_jsonl(d / f"{split}-en.jsonl", rows)


def _gen_pos(out: Path, seed: int, counts: dict[str, int], n_train: int, n_dev: int, n_test: int) -> None:
    d = out / "toy_pos"
    d.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rng = _rng(seed, "pos", split)
        sents = [sample_sentence(rng) for _ in range(n)]
        for lang in TOY_LANGUAGES if split == "test" else ("en",):
            srng = _rng(seed, "pos", split, lang, "surface")
            toks = [render(s, lang, srng) for s in sents]
            name = f"{split}-{lang}.conllu"
            counts[f"toy_pos/{name}"] = _write_conllu(d / name, toks, f"toy-pos-{split}-{lang}")


def _gen_chunk(out: Path, seed: int, counts: dict[str, int], n_train: int, n_dev: int) -> None:
    d = out / "toy_chunk"
    d.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev)):
        rng = _rng(seed, "chunk", split)
        rows = []
        for _ in range(n):
            toks = render(sample_sentence(rng), "en", rng)
            rows.append({"tokens": [t.form for t in toks], "tags": chunk_tags(toks)})
        counts[f"toy_chunk/{split}-en.jsonl"] = _write_jsonl(d / f"{split}-en.jsonl", rows)


def _gen_tatoeba(out: Path, seed: int, counts: dict[str, int], n_test: int) -> None:
    d = out / "toy_tatoeba"
    d.mkdir()
    for lang in DERIVED_LANGUAGES:
        rng = _rng(seed, "tatoeba", lang)
        sents = [sample_sentence(rng) for _ in range(n_test)]
        src = [text(render(s, lang, rng)) for s in sents]
        tgt = [text(render(s, "en", rng)) for s in sents]
        for name, lines in ((f"tatoeba.{lang}-en.{lang}", src), (f"tatoeba.{lang}-en.en", tgt)):
            counts[f"toy_tatoeba/{name}"] = _write_lines(d / name, lines)


def _gen_corpus(out: Path, seed: int, counts: dict[str, int], n_corpus: int) -> None:
    d = out / "corpus"
    d.mkdir()
    for lang in TOY_LANGUAGES:
        rng = _rng(seed, "corpus", lang)
        lines = (text(render(sample_sentence(rng), lang, rng)) for _ in range(n_corpus))
        counts[f"corpus/{lang}.txt"] = _write_lines(d / f"{lang}.txt", lines)
    rng = _rng(seed, "corpus", "mixed")

    def mixed() -> Iterable[str]:
        for _ in range(n_corpus):
            toks = render(sample_sentence(rng), rng.choice(TOY_LANGUAGES), rng)
            code_switch(toks, rng, content_rate=CODE_SWITCH_RATE, function_rate=FUNCTION_SWITCH_RATE)
            yield text(toks)

    counts["corpus/mixed.txt"] = _write_lines(d / "mixed.txt", mixed())
    rng = _rng(seed, "corpus", "parallel")
    held_out = {line for path in (out / "toy_tatoeba").iterdir()
                for line in path.read_text(encoding="utf-8").splitlines()}

    def parallel() -> Iterable[str]:
        # translation pairs (English and one derived language, the same meaning), the parallel data
        # of the tiny model's cross-lingual contrast; no side is a Tatoeba test sentence
        n = 0
        while n < n_corpus:
            meaning = sample_sentence(rng)
            lang = rng.choice(DERIVED_LANGUAGES)
            pair = (text(render(meaning, "en", rng)), text(render(meaning, lang, rng)))
            if held_out.isdisjoint(pair):
                n += 1
                yield "\t".join(pair)

    counts["corpus/parallel.tsv"] = _write_lines(d / "parallel.tsv", parallel())


# ------------------------------------------------------------------------------------------------
# Public entry point


def _arguments(seed: int, n_train: int, n_dev: int, n_test: int, n_corpus: int) -> dict:
    return {"seed": seed, "n_train": n_train, "n_dev": n_dev, "n_test": n_test, "n_corpus": n_corpus,
            "generator_version": GENERATOR_VERSION}


def read_manifest(root: Path) -> dict | None:
    """The manifest of a complete build at ``root``, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(root) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_toy_xtreme(root: Path, *, seed: int = 0, n_train: int = 2000, n_dev: int = 300,
                     n_test: int = 300, n_corpus: int = 20000) -> Path:
    """Generate the toy XTREME under ``root`` and return ``root``.

    Built in a temporary sibling directory and renamed into place, so readers never see a partial
    build; a complete build with the same arguments is reused as is. Concurrent callers with the
    same arguments all end up with the same valid directory.
    """
    root = Path(root)
    for name, value in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test), ("n_corpus", n_corpus)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    args = _arguments(seed, n_train, n_dev, n_test, n_corpus)
    manifest = read_manifest(root)
    if manifest is not None and manifest.get("arguments") == args:
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        counts: dict[str, int] = {}
        steps: list[tuple[str, Callable[[], None]]] = [
            ("xnli", lambda: _gen_xnli(tmp, seed, counts, n_train, n_dev, n_test)),
            ("mnli", lambda: _gen_mnli(tmp, seed, counts, MNLI_SIZE_FACTOR * n_train, n_dev)),
            ("paraphrase", lambda: _gen_paraphrase(tmp, seed, counts, n_train, n_dev)),
            ("pos", lambda: _gen_pos(tmp, seed, counts, n_train, n_dev, n_test)),
            ("chunk", lambda: _gen_chunk(tmp, seed, counts, n_train, n_dev)),
            ("tatoeba", lambda: _gen_tatoeba(tmp, seed, counts, n_test)),
            ("corpus", lambda: _gen_corpus(tmp, seed, counts, n_corpus)),
        ]
        for name, step in steps:
            logger.debug("toy xtreme: generating %s", name)
            step()
        checksums = {rel: _sha256(tmp / rel) for rel in sorted(counts)}
        manifest = {"arguments": args, "languages": list(TOY_LANGUAGES), "counts": counts,
                    "sha256": checksums}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
        _install(tmp, root, args)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("toy xtreme written to %s (seed=%d)", root, seed)
    return root


def _sha256(path: Path) -> str:
    """Content hash, so that consumers (the tiny model's cache key) notice changed data."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _install(tmp: Path, root: Path, args: dict) -> None:
    """Move a finished build into place; an existing different (or broken) build is replaced."""
    try:
        os.rename(tmp, root)
        return
    except OSError:
        if not root.exists():
            raise
    current = read_manifest(root)
    if current is not None and current.get("arguments") == args:
        return  # a concurrent writer with the same arguments won the race
    trash = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(root, trash)
    try:
        os.rename(tmp, root)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
