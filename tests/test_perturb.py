"""Evaluation perturbations: determinism, rates, labels, QA offsets, lexicons, the attack."""
from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest

from trainables.perturb import (changed_fraction, perturb_dataset, perturbation_names,
                                validate_perturbation)
from trainables.perturb.base import read_lexicon
from trainables.perturb.char_noise import KEYBOARD
from trainables.tasks.base import TaskDataError

LEXICON = str(Path(__file__).parent / "fixtures" / "lexicon.en-de.txt")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LEX_WORDS = ["the", "dog", "cat", "house", "big", "small", "city", "capital", "river", "water",
             "is", "and", "of", "red", "green", "book", "tree", "car", "road", "day"]

CONFIGS = {
    "char_noise": {"name": "char_noise", "rate": 0.2},
    "casing": {"name": "casing", "rate": 0.2},
    "punctuation": {"name": "punctuation", "rate": 0.2},
    "word_order": {"name": "word_order", "window": 3},
    "code_switch": {"name": "code_switch", "rate": 0.5, "lexicon": LEXICON},
}


def sentences(n: int, length: int, seed: int = 0, vocab=None) -> list[str]:
    rng = random.Random(seed)
    words = vocab or [f"w{i}ord" for i in range(500)]
    return [" ".join(rng.choice(words) for _ in range(length)) for _ in range(n)]


def classification(n=200, length=10, vocab=None) -> datasets.Dataset:
    a, b = sentences(n, length, 1, vocab), sentences(n, length, 2, vocab)
    return datasets.Dataset.from_dict({"text_a": a, "text_b": b, "label": [i % 3 for i in range(n)]},
                                      features=datasets.Features({
                                          "text_a": datasets.Value("string"),
                                          "text_b": datasets.Value("string"),
                                          "label": datasets.ClassLabel(names=["e", "n", "c"])}))


def squad_like() -> datasets.Dataset:
    """Tricky answers: at the start, mid-word, overlapping, repeated, at the very end."""
    rows = [
        {"id": "1", "context": "Paris is the capital of France and a big city.",
         "question": "What is the capital of France?",
         "answers": {"text": ["Paris", "capital of France", "the capital"], "answer_start": [0, 13, 9]}},
        {"id": "2", "context": "It cost $100 in 1999, the dog said; the dog ran",
         "question": "How much did it cost?",
         "answers": {"text": ["100", "dog ran"], "answer_start": [9, 40]}},
        {"id": "3", "context": "The red car and the green tree are by the road.",
         "question": "What is by the road?",
         "answers": {"text": ["green tree", "green tree"], "answer_start": [20, 20]}},
    ]
    return datasets.Dataset.from_list(rows)


def assert_offsets(data: datasets.Dataset) -> None:
    for ex in data:
        for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
            assert ex["context"][start:start + len(text)] == text, ex["id"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_deterministic_per_seed_and_language(name):
    data = classification(40, vocab=[f"w{i}ord" for i in range(100)] + LEX_WORDS)
    one = perturb_dataset(data, "classification", CONFIGS[name], seed=1, language="en")
    again = perturb_dataset(data, "classification", CONFIGS[name], seed=1, language="en")
    other = perturb_dataset(data, "classification", CONFIGS[name], seed=2, language="en")
    elsewhere = perturb_dataset(data, "classification", CONFIGS[name], seed=1, language="de")
    assert one["text_a"] == again["text_a"] and one["text_b"] == again["text_b"]
    assert one["text_a"] != other["text_a"]
    assert one["text_a"] != elsewhere["text_a"]
    assert one["text_a"] != data["text_a"]
    # an example's noise depends on its index, not on the rest of the split
    head = perturb_dataset(data.select(range(20)), "classification", CONFIGS[name], seed=1, language="en")
    assert head["text_a"] == one["text_a"][:20]
    assert one["label"] == data["label"] and one.features == data.features


@pytest.mark.parametrize("name,rate", [("char_noise", 0.1), ("char_noise", 0.3), ("casing", 0.2),
                                       ("punctuation", 0.25), ("code_switch", 0.4)])
def test_changes_about_the_requested_fraction(name, rate):
    vocab = LEX_WORDS if name == "code_switch" else None  # every word eligible
    data = classification(300, 10, vocab=vocab)
    config = {**CONFIGS[name], "rate": rate}
    out = perturb_dataset(data, "classification", config, seed=3, language="en")
    # 6000 words: binomial sd is below 0.006, so 0.025 is over 4 sd
    assert changed_fraction(data, out, "classification") == pytest.approx(rate, abs=0.025)
    assert out["label"] == data["label"]


def test_rate_zero_and_one():
    data = classification(20)
    for name in ("char_noise", "casing", "punctuation"):
        same = perturb_dataset(data, "classification", {**CONFIGS[name], "rate": 0}, seed=0, language="en")
        assert same["text_a"] == data["text_a"]
        every = perturb_dataset(data, "classification", {**CONFIGS[name], "rate": 1}, seed=0, language="en")
        assert changed_fraction(data, every, "classification") == 1.0


def test_word_order_moves_words_within_windows():
    data = classification(300, 12)  # words mostly distinct within a sentence
    out = perturb_dataset(data, "classification", {"name": "word_order", "window": 3}, seed=0,
                          language="en")
    for before, after in zip(data["text_a"], out["text_a"]):
        b, a = before.split(), after.split()
        for start in range(0, len(b), 3):
            assert sorted(a[start:start + 3]) == sorted(b[start:start + 3])
    # a random permutation of 3 fixes one word on average: 2/3 of the words move
    assert changed_fraction(data, out, "classification") == pytest.approx(2 / 3, abs=0.03)


def test_keyboard_map_and_keyboard_typos():
    assert set(KEYBOARD["s"]) == set("weadzx")
    assert set(KEYBOARD["g"]) == set("tyfhvb")
    assert set(KEYBOARD["q"]) == set("wa")
    assert all(a in KEYBOARD[b] for a in KEYBOARD for b in KEYBOARD[a])  # symmetric
    data = classification(50, 8)
    out = perturb_dataset(data, "classification", {"name": "char_noise", "rate": 1, "ops": ["keyboard"]},
                          seed=0, language="en")
    for before, after in zip(data["text_a"], out["text_a"]):
        for b, a in zip(before.split(), after.split()):
            diff = [(x, y) for x, y in zip(b, a) if x != y]
            assert len(a) == len(b) and len(diff) == 1 and diff[0][1] in KEYBOARD[diff[0][0]]


def test_char_noise_ops_by_hand():
    data = datasets.Dataset.from_dict({"text_a": ["abcdef ghijkl"] * 30, "label": [0] * 30})
    for op, check in [("drop", lambda b, a: len(a) == len(b) - 1),
                      ("insert", lambda b, a: len(a) == len(b) + 1),
                      ("swap", lambda b, a: sorted(a) == sorted(b) and
                       sum(x != y for x, y in zip(a, b)) == 2)]:
        out = perturb_dataset(data, "classification", {"name": "char_noise", "rate": 1, "ops": [op]},
                              seed=0, language="en")
        for text in out["text_a"]:
            for b, a in zip("abcdef ghijkl".split(), text.split()):
                assert a != b and check(b, a), (op, b, a)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_qa_offsets_stay_valid(name):
    data = squad_like()
    config = {**CONFIGS[name], **({"rate": 1.0} if "rate" in CONFIGS[name] else {})}
    for seed in range(5):
        out = perturb_dataset(data, "qa", config, seed=seed, language="en")
        assert_offsets(out)
        assert out["answers"] == [{**a, "answer_start": b["answers"]["answer_start"]}
                                  for a, b in zip(data["answers"], out)]
        assert out["context"] != data["context"] and out["id"] == data["id"]


def test_qa_bad_offsets_are_reported():
    data = datasets.Dataset.from_list([{"id": "q9", "context": "abc def", "question": "x?",
                                        "answers": {"text": ["def"], "answer_start": [3]}}])
    with pytest.raises(TaskDataError, match="q9.*answer_start 3"):
        perturb_dataset(data, "qa", CONFIGS["casing"], seed=0, language="en")


def xquad(language: str, limit: int = 150) -> datasets.Dataset:
    path = SHARED / "xquad" / f"xquad.{language}.json"
    if not path.is_file():
        pytest.skip(f"real data not available: {path}")
    rows = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append({"id": qa["id"], "context": paragraph["context"], "question": qa["question"],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    return datasets.Dataset.from_list(rows[:limit])


@pytest.mark.parametrize("language", ["en", "de", "zh"])
def test_real_xquad_offsets(language):
    data = xquad(language)
    for name, config in CONFIGS.items():
        if name == "code_switch" and language != "en":
            continue
        out = perturb_dataset(data, "qa", {**config, **({"rate": 0.5} if "rate" in config else {})},
                              seed=0, language=language)
        assert_offsets(out)
        if language != "zh" or name in ("char_noise", "word_order"):
            assert changed_fraction(data, out, "qa") > 0


def tagging() -> datasets.Dataset:
    tokens = [s.split() + ["."] for s in sentences(60, 8, 5, LEX_WORDS)]
    tags = [[(len(t) + i) % 7 for i, t in enumerate(sent)] for sent in tokens]
    return datasets.Dataset.from_dict({"tokens": tokens, "tags": tags})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tagging_keeps_tokens_and_tags_aligned(name):
    data = tagging()
    out = perturb_dataset(data, "tagging", CONFIGS[name], seed=0, language="en")
    assert changed_fraction(data, out, "tagging") > 0
    for before, after in zip(data, out):
        assert len(after["tokens"]) == len(before["tokens"]) == len(after["tags"])
        assert all(tok for tok in after["tokens"])
        if name == "word_order":
            assert sorted(zip(after["tokens"], after["tags"])) == sorted(zip(before["tokens"], before["tags"]))
        else:
            assert after["tags"] == before["tags"]
        assert after["tokens"][-1] == "." or name in ("word_order", "punctuation")


def test_multiple_choice_keeps_labels():
    data = datasets.Dataset.from_dict({
        "context": sentences(30, 8, 1), "question": ["cause"] * 30,
        "choices": [[a, b] for a, b in zip(sentences(30, 5, 2), sentences(30, 5, 3))],
        "label": [i % 2 for i in range(30)]})
    out = perturb_dataset(data, "multiple_choice", {"name": "char_noise", "rate": 0.5}, seed=0,
                          language="en")
    assert out["label"] == data["label"]
    assert all(len(c) == 2 for c in out["choices"])
    assert out["choices"] != data["choices"] and out["context"] != data["context"]


def test_code_switch_uses_the_lexicon():
    table = read_lexicon(LEXICON)
    assert table["the"] == ("das", "der", "die") and "in" not in table  # identity entries skipped
    data = datasets.Dataset.from_dict({"text_a": ["The dog is in the big house, near Mars.",
                                                  "A cat and a tree"], "label": [0, 1]})
    out = perturb_dataset(data, "classification", {"name": "code_switch", "rate": 1.0, "lexicon": LEXICON},
                          seed=0, language="de")
    first = out["text_a"][0].split()
    assert first[0] in ("Das", "Der", "Die") and first[1:5] == ["Hund", "ist", "in", first[4]]
    assert first[4] in ("das", "der", "die") and first[5:] == ["groß", "Haus,", "near", "Mars."]
    assert out["text_a"][1] == "A Katze und a Baum"
    back = perturb_dataset(out, "classification",
                           {"name": "code_switch", "rate": 1.0, "lexicon": LEXICON, "reverse": True},
                           seed=0, language="en")
    assert back["text_a"][1] == "A cat and a tree"


def test_code_switch_lexicon_path_and_errors(tmp_path):
    (tmp_path / "en-de.txt").write_text("dog Hund\n")
    config = {"name": "code_switch", "rate": 1.0, "lexicon": str(tmp_path / "en-{language}.txt")}
    data = datasets.Dataset.from_dict({"text_a": ["a dog"], "label": [0]})
    assert perturb_dataset(data, "classification", config, seed=0, language="de")["text_a"] == ["a Hund"]
    with pytest.raises(TaskDataError, match=r"en-fr\.txt not found"):
        perturb_dataset(data, "classification", config, seed=0, language="fr")
    (tmp_path / "en-xx.txt").write_text("dog Hund\nbad line here\n")
    with pytest.raises(TaskDataError, match="line 2"):
        perturb_dataset(data, "classification", config, seed=0, language="xx")


# --- the attack ---------------------------------------------------------------------------------

WEIGHTS = {"Hund": 0.3, "Haus": 0.2, "Katze": 0.1}


def weighted_scorer(calls: list):
    """Gold probability 0.9 minus a weight per German word: the greedy order is known."""
    def score(candidates):
        calls.append(len(candidates))
        return [0.9 - sum(WEIGHTS.get(w.strip(",."), 0.0) for w in c["text_a"].split())
                + (0.5 if c["label"] == 1 else 0.0) for c in candidates]
    return score


def test_attack_is_greedy_and_budgeted():
    data = datasets.Dataset.from_dict({"text_a": ["my cat saw the dog near a house"], "label": [0]})
    calls: list = []
    base = {"name": "attack", "lexicon": LEXICON, "typos": 0}
    out = perturb_dataset(data, "classification", {**base, "budget": 2}, seed=0, language="en",
                          gold_probability=weighted_scorer(calls))
    words = out["text_a"][0].split()
    assert words[4] == "Hund" and words[7] == "Haus" and words[1] == "cat"
    assert words[3] == "the"  # 'the' lowers nothing: never chosen
    assert calls[0] == 1 and len(calls) == 3  # the original, then one call per round
    out = perturb_dataset(data, "classification", {**base, "budget": 10}, seed=0, language="en",
                          gold_probability=weighted_scorer(calls))
    assert out["text_a"][0].split()[1] == "Katze"  # stops once nothing lowers the probability
    assert out["text_a"][0].split()[3] == "the" and out["label"] == [0]


def test_attack_with_typos_only_lowers_the_gold_probability():
    data = classification(10, 6)

    def score(candidates):  # prefers texts with fewer letters 'o'
        return [1 / (1 + sum(ch != "o" for ch in c["text_a"]) / 10) for c in candidates]

    out = perturb_dataset(data, "classification", {"name": "attack", "budget": 2, "typos": 3},
                          seed=0, language="en", gold_probability=score)
    for before, after in zip(data, out):
        assert score([after])[0] <= score([before])[0]
        assert 0 < sum(a != b for a, b in zip(before["text_a"].split(), after["text_a"].split())) <= 2
        assert after["label"] == before["label"]


def test_attack_needs_a_scorer_and_classification():
    data = classification(2)
    with pytest.raises(ValueError, match="^gold_probability:"):
        perturb_dataset(data, "classification", {"name": "attack"}, seed=0, language="en")
    with pytest.raises(ValueError, match="^family:"):
        perturb_dataset(tagging(), "tagging", {"name": "attack"}, seed=0, language="en",
                        gold_probability=lambda c: [0.5] * len(c))


@pytest.mark.slow
def test_attack_with_a_real_model(small_model):
    """The greedy attack on the tiny pretrained model with a fresh classification head."""
    from types import SimpleNamespace

    from trainables.model import build_model
    from trainables.perturb.attack import model_gold_probability

    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification", trainable=True),
                           labels=["a", "b", "c"])
    model, tokenizer = build_model(str(small_model), [task], dropout=0.0)
    score = model_gold_probability(model, task, tokenizer, max_length=32)
    data = classification(8, 6)
    out = perturb_dataset(data, "classification", {"name": "attack", "budget": 2, "typos": 2},
                          seed=0, language="en", gold_probability=score)
    before, after = score(list(data)), score(list(out))
    assert all(a <= b + 1e-6 for a, b in zip(after, before))
    assert sum(a < b - 1e-6 for a, b in zip(after, before)) >= 4


# --- configs ------------------------------------------------------------------------------------

def test_names_and_normalised_configs():
    assert set(perturbation_names()) == {"attack", "casing", "char_noise", "code_switch",
                                         "punctuation", "word_order"}
    assert validate_perturbation({"name": "char_noise"}) == {
        "name": "char_noise", "rate": 0.1, "ops": ["swap", "drop", "insert", "keyboard"]}
    assert validate_perturbation({"name": "casing", "rate": "0.5", "ops": "upper"}) == {
        "name": "casing", "rate": 0.5, "ops": ["upper"]}


@pytest.mark.parametrize("config,start,hint", [
    ({"name": "char_nois"}, "name:", "did you mean 'char_noise'"),
    ({"rate": 0.1}, "name:", "missing"),
    ({"name": "char_noise", "rates": 0.1}, "rates:", "did you mean 'rate'"),
    ({"name": "char_noise", "rate": 1.5}, "rate:", "[0, 1]"),
    ({"name": "char_noise", "ops": ["typo"]}, "ops:", "'typo'"),
    ({"name": "word_order", "window": 1}, "window:", ">= 2"),
    ({"name": "word_order", "window": 2.5}, "window:", "integer"),
    ({"name": "code_switch", "rate": 0.5}, "lexicon:", "required"),
    ({"name": "attack", "budget": 0}, "budget:", ">= 1"),
    ({"name": "punctuation", "ops": []}, "ops:", "non-empty"),
])
def test_invalid_configs_name_the_field(config, start, hint):
    with pytest.raises(ValueError) as err:
        validate_perturbation(config)
    assert str(err.value).startswith(start) and hint in str(err.value)


def test_unknown_family_and_missing_fields():
    data = classification(2)
    with pytest.raises(ValueError, match="^family:"):
        perturb_dataset(data, "retrieval", CONFIGS["casing"], seed=0, language="en")
    with pytest.raises(TaskDataError, match="text_a"):
        perturb_dataset(datasets.Dataset.from_dict({"sentence": ["x"], "label": [0]}),
                        "classification", CONFIGS["casing"], seed=0, language="en")


def test_labels_tell_ops_and_lexicons_apart_and_keep_the_old_ones():
    import re

    from trainables.perturb import validate_perturbation
    from trainables.perturb.char_noise import OPS
    from trainables.records import perturbation_label

    def label(config):
        return perturbation_label(validate_perturbation(config))  # as the spec and the trial see it

    # configs without a list or a lexicon: the labels logged so far
    assert label({"name": "char_noise", "rate": 0.1}) == "char_noise-rate0.1"
    assert label({"name": "word_order", "window": 3}) == "word_order-window3"
    assert label({"name": "char_noise", "rate": 0.1, "ops": list(OPS)}) == "char_noise-rate0.1"
    assert label({"name": "attack"}) == "attack-budget3-reverseFalse-typos2"
    # ops and lexicons now count
    swap = label({"name": "char_noise", "rate": 0.1, "ops": ["swap"]})
    assert swap == "char_noise-opsswap-rate0.1"
    assert label({"name": "char_noise", "rate": 0.1, "ops": ["swap", "drop"]}) == "char_noise-opsswap_drop-rate0.1"
    assert label({"name": "casing", "ops": ["upper"]}) != label({"name": "casing", "ops": ["lower"]})
    de = label({"name": "code_switch", "lexicon": "/data/muse/en-de.txt"})
    assert de == "code_switch-lexiconen-de-rate0.5-reverseFalse"
    assert de != label({"name": "code_switch", "lexicon": "/data/muse/en-fr.txt"})
    assert label({"name": "code_switch", "lexicon": "muse/en-{language}.txt"}) == \
        "code_switch-lexiconen-language-rate0.5-reverseFalse"
    assert label({"name": "attack", "lexicon": "x/en-de.txt"}) == "attack-budget3-lexiconen-de-reverseFalse-typos2"
    for text in (swap, de):
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", text)
