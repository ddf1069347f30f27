"""The toy XTREME generator: determinism, file formats, label balance and language properties."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from trainables.toy import NLI_LABELS, SHARED_ANCHORS, TOY_LANGUAGES, lexicon_vocabulary, read_manifest, write_toy_xtreme
from trainables.toy.lexicon import CONCEPT_POS, CONCEPTS, LEXICON
from trainables.toy.world import MNLI_SIZE_FACTOR

SMALL = {"n_train": 90, "n_dev": 30, "n_test": 40, "n_corpus": 300}
DERIVED = [lang for lang in TOY_LANGUAGES if lang != "en"]
UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy_xtreme(tmp_path_factory.mktemp("toy") / "data", seed=0, **SMALL)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _n_words(sentence: str, lang: str) -> int:
    """Syntactic words: a fused form (not a lexicon word, e.g. "doesn't") counts as two."""
    vocab = lexicon_vocabulary(lang)
    tokens = sentence.replace(",", " ").replace(".", " ").split()
    return sum(1 if t in vocab or t in SHARED_ANCHORS else 2 for t in tokens)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def parse_conllu(path: Path) -> list[dict]:
    """A strict CoNLL-U reader: returns sentences with comments, words and multiword ranges."""
    sentences, current = [], {"comments": {}, "words": [], "ranges": []}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            if current["words"]:
                sentences.append(current)
                current = {"comments": {}, "words": [], "ranges": []}
            continue
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition(" = ")
            current["comments"][key] = value
            continue
        cols = line.split("\t")
        assert len(cols) == 10, f"{path.name}: expected 10 columns: {line!r}"
        if re.fullmatch(r"\d+-\d+", cols[0]):
            start, end = map(int, cols[0].split("-"))
            current["ranges"].append((start, end, cols[1], cols[9]))
            assert cols[2:9] == ["_"] * 7
            continue
        assert cols[0].isdigit(), line
        current["words"].append(cols)
    assert not current["words"], f"{path.name}: file must end with a blank line"
    return sentences


# ------------------------------------------------------------------------------------------------
# Build mechanics


def test_layout_and_manifest(toy):
    manifest = read_manifest(toy)
    assert manifest["arguments"]["seed"] == 0
    assert manifest["languages"] == list(TOY_LANGUAGES)
    for rel, count in manifest["counts"].items():
        path = toy / rel
        assert path.is_file(), rel
        if path.suffix == ".conllu":
            assert len(parse_conllu(path)) == count
        else:
            assert len(path.read_text(encoding="utf-8").splitlines()) == count, rel
    expected = ["toy_xnli/train-en.jsonl", "toy_xnli/dev-en.jsonl", "toy_mnli/train-en.jsonl",
                "toy_mnli/dev-en.jsonl", "toy_paraphrase/train-en.jsonl",
                "toy_paraphrase/dev-en.jsonl", "toy_pos/train-en.conllu", "toy_pos/dev-en.conllu",
                "toy_chunk/train-en.jsonl", "toy_chunk/dev-en.jsonl", "corpus/mixed.txt", "corpus/parallel.tsv"]
    expected += [f"toy_xnli/test-{lang}.jsonl" for lang in TOY_LANGUAGES]
    expected += [f"toy_pos/test-{lang}.conllu" for lang in TOY_LANGUAGES]
    expected += [f"corpus/{lang}.txt" for lang in TOY_LANGUAGES]
    expected += [f"toy_tatoeba/tatoeba.{lang}-en.{side}" for lang in DERIVED for side in (lang, "en")]
    assert sorted(expected) == sorted(manifest["counts"])
    # no temporary directories are left next to the build
    assert [p.name for p in toy.parent.iterdir()] == [toy.name]


def test_same_seed_identical_other_seed_different(tmp_path, toy):
    again = write_toy_xtreme(tmp_path / "again", seed=0, **SMALL)
    assert _tree(again) == _tree(toy)
    other = write_toy_xtreme(tmp_path / "other", seed=1, **SMALL)
    a, b = _tree(toy), _tree(other)
    assert a.keys() == b.keys()
    differing = [k for k in a if k != "manifest.json" and a[k] != b[k]]
    assert len(differing) == len(a) - 1, "every data file must depend on the seed"


def test_complete_build_is_reused_and_different_arguments_rebuild(tmp_path):
    root = write_toy_xtreme(tmp_path / "d", seed=3, **SMALL)
    marker = root / "marker"
    marker.write_text("x")
    assert write_toy_xtreme(root, seed=3, **SMALL) == root
    assert marker.exists(), "a complete build with the same arguments must be reused"
    write_toy_xtreme(root, seed=4, **SMALL)
    assert not marker.exists()
    assert read_manifest(root)["arguments"]["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_incomplete_build_is_replaced(tmp_path):
    root = tmp_path / "d"
    (root / "toy_xnli").mkdir(parents=True)  # e.g. left by a crashed copy, no manifest
    write_toy_xtreme(root, seed=0, **SMALL)
    assert read_manifest(root) is not None


def test_rejects_empty_splits(tmp_path):
    with pytest.raises(ValueError):
        write_toy_xtreme(tmp_path / "d", n_train=0)


# ------------------------------------------------------------------------------------------------
# Formats and labels


def test_xnli_format_balance_and_parallel_tests(toy):
    for split in ("train", "dev"):
        rows = _jsonl(toy / f"toy_xnli/{split}-en.jsonl")
        assert len(rows) == SMALL[f"n_{split}"]
        for row in rows:
            assert set(row) == {"premise", "hypothesis", "label"}
            assert row["label"] in NLI_LABELS and row["premise"] and row["hypothesis"]
        counts = Counter(r["label"] for r in rows)
        assert set(counts) == set(NLI_LABELS) and max(counts.values()) - min(counts.values()) <= 1
    tests = {lang: _jsonl(toy / f"toy_xnli/test-{lang}.jsonl") for lang in TOY_LANGUAGES}
    labels = [r["label"] for r in tests["en"]]
    for lang, rows in tests.items():
        assert len(rows) == SMALL["n_test"]
        assert [r["label"] for r in rows] == labels, "test sets are translations of each other"
        for row in rows:
            if row["label"] == "entailment":  # the hypothesis drops modifiers
                assert _n_words(row["hypothesis"], lang) < _n_words(row["premise"], lang), row
    assert tests["xs"][0]["premise"] != tests["en"][0]["premise"]


def test_mnli_is_a_larger_english_nli_set_with_pairs_of_its_own(toy):
    xnli = {(r["premise"], r["hypothesis"]) for split in ("train", "dev", "test")
            for r in _jsonl(toy / f"toy_xnli/{split}-en.jsonl")}
    for split in ("train", "dev"):
        rows = _jsonl(toy / f"toy_mnli/{split}-en.jsonl")
        assert len(rows) == SMALL[f"n_{split}"] * (MNLI_SIZE_FACTOR if split == "train" else 1)
        assert all(set(r) == {"premise", "hypothesis", "label"} and r["label"] in NLI_LABELS for r in rows)
        counts = Counter(r["label"] for r in rows)
        assert set(counts) == set(NLI_LABELS) and max(counts.values()) - min(counts.values()) <= 1
        shared = sum((r["premise"], r["hypothesis"]) in xnli for r in rows)
        assert shared <= 0.02 * len(rows), f"{shared} of toy_mnli's {split} pairs are toy_xnli pairs"
    assert not (toy / "toy_mnli" / "test-en.jsonl").exists()  # an intermediate task: no test split


def test_paraphrase_format_and_balance(toy):
    for split in ("train", "dev"):
        rows = _jsonl(toy / f"toy_paraphrase/{split}-en.jsonl")
        assert len(rows) == SMALL[f"n_{split}"]
        assert all(set(r) == {"sentence1", "sentence2", "label"} and r["label"] in (0, 1) for r in rows)
        assert all(r["sentence1"] != r["sentence2"] for r in rows)
        counts = Counter(r["label"] for r in rows)
        assert abs(counts[0] - counts[1]) <= 1


def test_chunk_format(toy):
    rows = _jsonl(toy / "toy_chunk/train-en.jsonl")
    assert len(rows) == SMALL["n_train"]
    kinds = Counter()
    for row in rows:
        assert set(row) == {"tokens", "tags"} and len(row["tokens"]) == len(row["tags"]) > 0
        prev = "O"
        for tag in row["tags"]:
            assert tag == "O" or re.fullmatch(r"[BI]-(NP|VP|PP|ADVP)", tag), tag
            if tag.startswith("I-"):
                assert prev != "O" and prev[2:] == tag[2:], row
            prev = tag
            kinds[tag] += 1
    assert {"B-NP", "I-NP", "B-VP", "B-PP", "O"} <= set(kinds)


def test_conllu_is_valid(toy):
    n_ranges = 0
    for path in sorted((toy / "toy_pos").glob("*.conllu")):
        sentences = parse_conllu(path)
        ids = [s["comments"]["sent_id"] for s in sentences]
        assert len(set(ids)) == len(ids)
        for s in sentences:
            words = s["words"]
            n = len(words)
            assert [int(w[0]) for w in words] == list(range(1, n + 1))
            assert all(w[3] in UPOS for w in words)
            head_ids = [int(w[6]) for w in words]
            assert all(0 <= h <= n for h in head_ids) and head_ids.count(0) == 1
            for i in range(1, n + 1):  # every word reaches the root: a tree, no cycles
                seen, j = set(), i
                while j:
                    assert j not in seen
                    seen.add(j)
                    j = head_ids[j - 1]
            # `# text` is reproduced by the surface tokens: ranges replace their words
            covered = {}
            for start, end, form, misc in s["ranges"]:
                assert end == start + 1 and 1 <= start < n
                covered[start] = (end, form, misc)
                n_ranges += 1
            text, i = "", 1
            while i <= n:
                if i in covered:
                    end, form, misc = covered[i]
                    i = end + 1
                else:
                    form, misc = words[i - 1][1], words[i - 1][9]
                    i += 1
                text += form + ("" if "SpaceAfter=No" in misc else " ")
            assert text.strip() == s["comments"]["text"]
    assert n_ranges > 0, "real UD has multiword tokens; so must the toy data"


def test_pos_tests_are_parallel_and_cover_tags(toy):
    tests = {lang: parse_conllu(toy / f"toy_pos/test-{lang}.conllu") for lang in TOY_LANGUAGES}
    for lang, sentences in tests.items():
        assert len(sentences) == SMALL["n_test"]
        # translations: the same multiset of tags except English's auxiliary "does" and the
        # comma after a fronted adverb (en, xs)
        for en, other in zip(tests["en"], sentences):
            en_tags = Counter(w[3] for w in en["words"] if w[3] not in ("AUX", "PUNCT"))
            assert en_tags == Counter(w[3] for w in other["words"] if w[3] not in ("AUX", "PUNCT"))
    tags = Counter(w[3] for s in tests["en"] for w in s["words"])
    assert {"DET", "ADJ", "NOUN", "VERB", "PUNCT"} <= set(tags)


def test_tatoeba_files_align(toy):
    for lang in DERIVED:
        src = (toy / f"toy_tatoeba/tatoeba.{lang}-en.{lang}").read_text(encoding="utf-8").splitlines()
        tgt = (toy / f"toy_tatoeba/tatoeba.{lang}-en.en").read_text(encoding="utf-8").splitlines()
        assert len(src) == len(tgt) == SMALL["n_test"]
        assert all(src) and all(tgt) and src != tgt


# ------------------------------------------------------------------------------------------------
# Language properties


def _words(sentence: str) -> list[str]:
    return re.findall(r"[^\s.,]+", sentence)


def test_vocabularies_are_disjoint_except_anchors_and_loanwords():
    en = lexicon_vocabulary("en")
    vocabs = {lang: lexicon_vocabulary(lang) for lang in DERIVED}
    for lang, vocab in vocabs.items():
        assert len(vocab) > 200
        assert vocab & en <= LEXICON.loanwords, lang
        assert not vocab & SHARED_ANCHORS
        for other, other_vocab in vocabs.items():
            if other != lang:
                assert vocab & other_vocab <= LEXICON.loanwords


def test_loanwords_are_english_content_words_closer_languages_borrow_more():
    content = {name for name, upos, _ in CONCEPTS if upos in ("NOUN", "VERB", "ADJ", "ADV")}
    borrowed = {lang: {name for name in content if LEXICON.form(lang, name) == LEXICON.form("en", name)}
                for lang in DERIVED}
    for lang in DERIVED:  # function words are never borrowed, and plurals are the language's own
        assert all(LEXICON.form(lang, name) != LEXICON.form("en", name)
                   for name, upos, _ in CONCEPTS if name not in content)
        nouns = [n for n in borrowed[lang] if CONCEPT_POS[n] == "NOUN"]
        assert nouns and all(LEXICON.form(lang, n, "pl") != LEXICON.form("en", n, "pl") for n in nouns)
    share = {lang: len(names) / len(content) for lang, names in borrowed.items()}
    assert 0.1 < share["xo"] < share["xv"] < share["xs"] < 0.6, share


def test_corpus_words_belong_to_their_language(toy):
    vocab = {lang: lexicon_vocabulary(lang) for lang in TOY_LANGUAGES}
    for lang in TOY_LANGUAGES:
        lines = (toy / f"corpus/{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == SMALL["n_corpus"]
        words = Counter(w for line in lines for w in _words(line))
        foreign = {w for w in words if w not in vocab[lang] and w not in SHARED_ANCHORS}
        # only fused multiword forms (e.g. a preposition with its article) are not lexicon words
        for w in foreign:
            assert any(w.startswith(p) and (w[len(p):] in vocab[lang] or w[len(p):] == "n't")
                       for p in vocab[lang]), (lang, w)
        anchors = {w for w in words if w in SHARED_ANCHORS}
        assert anchors, "names and digits are shared across languages"


def test_mixed_corpus_is_code_switched(toy):
    vocab = {lang: lexicon_vocabulary(lang) for lang in TOY_LANGUAGES}
    lines = (toy / "corpus/mixed.txt").read_text(encoding="utf-8").splitlines()
    n_mixed = 0
    for line in lines:
        langs = {lang for w in _words(line) for lang in TOY_LANGUAGES if w in vocab[lang]}
        n_mixed += len(langs) >= 2
    assert n_mixed > 0.5 * len(lines)


def test_parallel_corpus_pairs_english_with_one_derived_language_and_holds_out_tatoeba(toy):
    vocab = {lang: lexicon_vocabulary(lang) for lang in TOY_LANGUAGES}
    pairs = [line.split("\t") for line in (toy / "corpus/parallel.tsv").read_text(encoding="utf-8").splitlines()]
    assert len(pairs) == SMALL["n_corpus"] and all(len(pair) == 2 for pair in pairs)
    tatoeba = {line for path in (toy / "toy_tatoeba").iterdir() for line in path.read_text(encoding="utf-8").splitlines()}
    seen = Counter()
    for english, translation in pairs:
        assert english not in tatoeba and translation not in tatoeba
        words = [w for w in _words(translation) if w not in SHARED_ANCHORS]
        own = [lang for lang in DERIVED if sum(w in vocab[lang] for w in words) > 0.5 * len(words)]
        assert len(own) == 1, translation
        seen[own[0]] += 1
        # the same meaning: the shared anchors (names, digits) of both sides agree
        assert sorted(w for w in _words(english) if w in SHARED_ANCHORS) == \
            sorted(w for w in _words(translation) if w in SHARED_ANCHORS)
    assert set(seen) == set(DERIVED)


def test_word_orders(toy):
    for lang in TOY_LANGUAGES:
        for s in parse_conllu(toy / f"toy_pos/test-{lang}.conllu"):
            words = s["words"]
            upos = [w[3] for w in words]
            for i, w in enumerate(words):
                head = int(w[6])
                if w[7] == "amod":  # adjectives precede the noun except in xo
                    assert (head > i + 1) == (lang != "xo"), (lang, s["comments"]["text"])
                if w[7] == "nsubj":  # subject before the verb except in verb-initial xv
                    assert (head > i + 1) == (lang != "xv"), (lang, s["comments"]["text"])
                if w[7] == "case":  # prepositions, except xo's postpositions
                    assert (head > i + 1) == (lang != "xo"), (lang, s["comments"]["text"])
                if lang == "xo" and w[3] == "VERB":  # the verb ends its clause
                    assert upos[i + 1] in ("PUNCT", "CCONJ"), s["comments"]["text"]
            if lang == "xv":
                assert upos[0] in ("VERB", "PART"), s["comments"]["text"]
