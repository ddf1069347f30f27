"""Classification and tagging tasks on upstream-format fixture files, and tagging windows."""
from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from trainables.families.tagging import IGNORE, Tagging, owners, plan_windows
from trainables.formats import hub_pairs, hub_tags, read_ccg, read_panx
from trainables.tasks import build_task
from trainables.tasks.base import Task, TaskDataError, TaskInfo, TaskOptions
from trainables.trial import run_trial

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HP = dict(learning_rate=1e-3, batch_size=16, eval_batch_size=32, epochs=1, max_length=32,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


def task(name: str, root: Path | None, **options) -> Task:
    return build_task(name, TaskOptions(data_dir=str(root) if root else None, **options))


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- tagging windows ---------------------------------------------------------------------------

def test_windows_cover_every_word_and_each_word_has_one_owner():
    assert plan_windows([1] * 10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert owners([(0, 4), (2, 6), (4, 8), (6, 10)], 10) == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert plan_windows([3, 1], 8, 4) == [(0, 2)]                    # fits: one window
    rng = np.random.default_rng(0)
    for _ in range(200):
        size = int(rng.integers(1, 12))
        lengths = [int(n) for n in rng.integers(1, size + 1, size=int(rng.integers(1, 40)))]
        spans = plan_windows(lengths, size, max(1, size // 2))
        assert spans[0][0] == 0 and spans[-1][1] == len(lengths)
        assert all(sum(lengths[s:e]) <= size and e > s for s, e in spans)
        assert all(b[0] <= a[1] and b[0] > a[0] for a, b in zip(spans, spans[1:]))   # no gaps, moving on
        own = owners(spans, len(lengths))
        assert all(spans[w][0] <= i < spans[w][1] for i, w in enumerate(own))


class _Tagger(Task):
    """A tagging task with one tag per word position (tag i on word i), for checking alignment."""

    info = TaskInfo(name="positions", family="tagging", languages=("en",), main_metric="f1", source="test")
    labels = tuple(f"T{i}" for i in range(64))

    def load(self, split, language):
        raise NotImplementedError


def _long_sentences():
    words = "the quick brown fox jumps over a lazy dog near riverbanks".split()
    tokens = [words[i % len(words)] + ("s" if i % 3 == 0 else "") for i in range(45)]
    return datasets.Dataset.from_dict({"tokens": [tokens, tokens[:5], tokens[7:30]],
                                       "tags": [list(range(45)), list(range(5)), list(range(23))]})


def test_training_windows_label_each_word_exactly_once(small_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    data = _long_sentences()
    features = Tagging().featurize(_Tagger(), data, tokenizer, max_length=12)
    assert set(features.column_names) == {"input_ids", "attention_mask", "labels"}
    assert all(len(ids) <= 12 for ids in features["input_ids"])
    assert len(features) > 3                                           # the long sentences were split
    labels = [l for row in features["labels"] for l in row if l != IGNORE]
    assert sorted(labels) == sorted(list(range(45)) + list(range(5)) + list(range(23)))
    # in order, sentence 0's labelled positions hold its 45 words' tags on their first sub-words
    first = tokenizer(data["tokens"][0], is_split_into_words=True)
    first_piece: dict[int, int] = {}
    for position, word in enumerate(first.word_ids()):
        if word is not None and word not in first_piece:
            first_piece[word] = first["input_ids"][position]
    labelled = [(i, l) for ids, row in zip(features["input_ids"], features["labels"])
                for i, l in zip(ids, row) if l != IGNORE][:45]
    assert [l for _, l in labelled] == list(range(45))
    assert [i for i, _ in labelled] == [first_piece[w] for w in range(45)]


class _EchoTagging(Tagging):
    """Predicts tag ``input_id % 64`` at every position: shows which sub-word a word's prediction
    was read from, without a trained model."""

    def forward(self, model, head, batch):
        return torch.nn.functional.one_hot(batch["input_ids"] % 64, 64).float()


def test_evaluation_is_word_aligned_past_max_length(small_model):
    from trainables.model import build_model

    model, tokenizer = build_model(str(small_model), [_Tagger()])
    data = _long_sentences()
    family = _EchoTagging()
    predicted = family.predict(_Tagger(), model, data, tokenizer, batch_size=2, max_length=10)
    assert [len(p) for p in predicted] == [len(t) for t in data["tokens"]]
    for tokens, preds in zip(data["tokens"], predicted):
        enc = tokenizer(tokens, is_split_into_words=True)
        firsts = {}
        for position, word in enumerate(enc.word_ids()):
            if word is not None and word not in firsts:
                firsts[word] = enc["input_ids"][position] % 64
        assert preds == [firsts[w] for w in range(len(tokens))]
    metrics = family.evaluate(_Tagger(), model, data, tokenizer, batch_size=4, max_length=10)
    gold = [t for tags in data["tags"] for t in tags]
    pred = [t for p in predicted for t in p]
    assert metrics["n"] == 3
    assert metrics["accuracy"] == pytest.approx(np.mean(np.array(gold) == np.array(pred)))


def test_seqeval_f1_and_accuracy_by_hand(small_model):
    """Constant predictions (head bias) on 40-word sentences with max_length 8: 2 gold PER
    entities, 40 predicted one-word PER entities -> P 2/40, R 1, F1 = 2PR/(P+R)."""
    from trainables.model import build_model

    panx = task("panx", None)
    model, tokenizer = build_model(str(small_model), [panx])
    linear = model.heads["panx"][1]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([0, 5.0, 0, 0, 0, 0, 0]))       # always B-PER
    model.eval()
    tags = [0] * 40
    tags[3] = tags[30] = 1
    data = datasets.Dataset.from_dict({"tokens": [[f"w{i}" for i in range(40)]], "tags": [tags]})
    metrics = Tagging().evaluate(panx, model, data, tokenizer, batch_size=4, max_length=8)
    p, r = 2 / 40, 1.0
    assert metrics == pytest.approx({"accuracy": 2 / 40, "f1": 2 * p * r / (p + r), "n": 1.0})


# --- readers -------------------------------------------------------------------------------

GLUE_MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")


def _mnli_rows(n: int, offset: int = 0) -> list[str]:
    labels = ("entailment", "neutral", "contradiction")
    return [f"{i}\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe \"cat\" sat {i}.\t"
            f"A cat {i % 3}.\t{labels[i % 3]}\t{labels[(i + offset) % 3]}" for i in range(n)]


def write_mnli(root: Path, n_train: int = 6) -> None:
    write(root / "MNLI" / "train.tsv", [GLUE_MNLI_HEADER, *_mnli_rows(n_train)])
    write(root / "MNLI" / "dev_matched.tsv", [GLUE_MNLI_HEADER, *_mnli_rows(3, 1),
                                              "9\t1\t1e\tx\t()\t()\t()\t()\tno consensus\th\tneutral\t-"])


def test_mnli_glue_tsv(tmp_path):
    write_mnli(tmp_path)
    mnli = task("mnli", tmp_path)
    train, dev = mnli.load("train", "en"), mnli.load("dev", "en")
    assert train.column_names == ["text_a", "text_b", "label"]
    assert train[0] == {"text_a": 'The "cat" sat 0.', "text_b": "A cat 0.", "label": 0}
    assert train["label"] == [0, 1, 2, 0, 1, 2]
    assert dev["label"] == [1, 2, 0]                                     # the '-' row is dropped
    assert mnli.info.intermediate and not mnli.info.target


def test_qqp_glue_tsv_skips_malformed_rows(tmp_path):
    write(tmp_path / "QQP" / "train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                                           "1\t1\t2\tHow do I cook?\tHow to cook?\t1",
                                           "2\t3\t4\tbroken row without label",
                                           "3\t5\t6\tWhat is AI?\tWho is Al?\t0"])
    data = task("qqp", tmp_path).load("train", "en")
    assert data["label"] == [1, 0] and data["text_b"] == ["How to cook?", "Who is Al?"]
    assert task("qqp", tmp_path).labels == ("not_duplicate", "duplicate")


XNLI_HEADER = ("language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\tlabel3\t"
               "label4\tlabel5\tsentence1_tokenized\tsentence2_tokenized\tmatch")


def write_xnli(root: Path, split: str, per_language: dict[str, int]) -> None:
    labels = ("entailment", "neutral", "contradiction")
    rows = [XNLI_HEADER]
    for lang, n in per_language.items():
        rows += [f"{lang}\t{labels[i % 3]}\t()\t()\t()\t()\tPremise {lang} {i}\tHypothesis {i}\t1\t{i}\t"
                 f"travel\t{labels[i % 3]}\t\t\t\t\tP\tH\tTrue" for i in range(n)]
    write(root / "XNLI-1.0" / f"xnli.{split}.tsv", rows)


def test_xnli_reads_mnli_for_english_training_and_the_xnli_tsv_per_language(tmp_path):
    write_mnli(tmp_path)
    write_xnli(tmp_path, "test", {"en": 4, "de": 5})
    xnli = task("xnli", tmp_path)
    assert len(xnli.load("train", "en")) == 6
    de = xnli.load("test", "de")
    assert len(de) == 5 and de["label"] == [0, 1, 2, 0, 1] and de["text_a"][0] == "Premise de 0"
    assert len(xnli.load("test", "en")) == 4
    with pytest.raises(TaskDataError, match=r"task xnli: test split has no rows for language 'fr'"):
        xnli.load("test", "fr")
    with pytest.raises(TaskDataError, match=r"task xnli: dev split for language 'en' not found at .*xnli.dev.tsv"):
        xnli.load("dev", "en")


def test_pawsx_upstream_tsv(tmp_path):
    header = "id\tsentence1\tsentence2\tlabel"
    write(tmp_path / "x-final" / "en" / "train.tsv", [header, "1\tA b.\tB a.\t0", "2\tC d.\tC d!\t1"])
    write(tmp_path / "x-final" / "de" / "translated_train.tsv",
          [header, "1\tA b.\t\t0", "2\tC d.\tC d!\t1", "3\tE f.\tF e.\tNaN"])
    write(tmp_path / "x-final" / "de" / "test_2k.tsv", [header, "7\t\"Ja\" sagt er.\tEr sagt ja.\t1"])
    pawsx = task("pawsx", tmp_path)
    assert pawsx.load("train", "en")["label"] == [0, 1]
    assert pawsx.load("train", "de")["text_a"] == ["C d."]            # empty / unlabelled rows dropped
    assert pawsx.load("test", "de")[0] == {"text_a": '"Ja" sagt er.', "text_b": "Er sagt ja.", "label": 1}
    # translated_train by language code: English train plus the task's own German translation
    translated = task("pawsx", tmp_path, translated_train=("de",)).load_train()
    assert translated["text_a"] == ["A b.", "C d.", "C d."]
    tsv = tmp_path / "x-final" / "de" / "translated_train.tsv"
    with pytest.raises(TaskDataError, match=r"translated_train .*translated_train.tsv: give a language code"):
        task("pawsx", tmp_path, translated_train=(str(tsv),)).load_train()


def _conllu_sentence(words: list[tuple[str, str]], mwt: tuple[int, str] | None = None) -> list[str]:
    lines = ["# sent_id = x"]
    for i, (form, upos) in enumerate(words, 1):
        if mwt and mwt[0] == i:
            lines.append(f"{i}-{i + 1}\t{mwt[1]}\t_\t_\t_\t_\t_\t_\t_\t_")
        lines.append(f"{i}\t{form}\t{form.lower()}\t{upos}\t_\t_\t0\tdep\t_\t_")
    return [*lines, ""]


def test_udpos_conllu_concatenates_treebanks_and_skips_multiword_tokens(tmp_path):
    write(tmp_path / "UD_English-EWT" / "en_ewt-ud-train.conllu",
          _conllu_sentence([("I", "PRON"), ("ran", "VERB")]))
    write(tmp_path / "UD_English-GUM" / "en_gum-ud-train.conllu",
          _conllu_sentence([("Go", "VERB"), ("!", "PUNCT")]))
    write(tmp_path / "UD_Spanish-GSD" / "es_gsd-ud-test.conllu",
          [*_conllu_sentence([("Voy", "VERB"), ("a", "ADP"), ("el", "DET"), ("mar", "NOUN")], mwt=(2, "al")),
           "3.1\tfoo\t_\tX\t_\t_\t_\t_\t_\t_"])
    write(tmp_path / "UD_Estonian-EDT" / "et_edt-ud-test.conllu", _conllu_sentence([("Tere", "INTJ")]))
    udpos = task("udpos", tmp_path)
    train = udpos.load("train", "en")
    assert train["tokens"] == [["I", "ran"], ["Go", "!"]]
    assert train["tags"] == [[udpos.labels.index("PRON"), udpos.labels.index("VERB")],
                             [udpos.labels.index("VERB"), udpos.labels.index("PUNCT")]]
    es = udpos.load("test", "es")                                     # not es_ nor et_ mixed up
    assert es["tokens"] == [["Voy", "a", "el", "mar"]] and len(udpos.labels) == 17
    assert dict(udpos.info.language_sets)["xtreme"] != udpos.info.languages
    with pytest.raises(TaskDataError, match=r"task udpos: dev split for language 'es' not found at .*es_\*-ud-dev"):
        udpos.load("dev", "es")


def test_panx_upstream_files_strip_language_prefix(tmp_path):
    write(tmp_path / "panx" / "de" / "test", ["de:Angela\tB-PER", "de:Merkel\tI-PER", "de:in\tO",
                                               "de:http://x.de\tO", "", "de:Berlin\tB-LOC", ""])
    data = task("panx", tmp_path).load("test", "de")
    assert data["tokens"] == [["Angela", "Merkel", "in", "http://x.de"], ["Berlin"]]
    assert data["tags"] == [[1, 2, 0, 0], [5]]
    write(tmp_path / "panx" / "de" / "dev", ["de:Paris\tB-GPE", ""])
    with pytest.raises(TaskDataError, match=r"task panx: dev split for language 'de': .*dev: sentence 1: unknown tag 'B-GPE'"):
        task("panx", tmp_path).load("dev", "de")
    assert read_panx(tmp_path / "panx" / "de" / "test")[1] == {"tokens": ["Berlin"], "tags": ["B-LOC"]}


def test_ccg_both_formats_and_rare_tags_become_unk(tmp_path):
    frequent = " ".join(["N"] * 10 + ["NP/N"] * 10)
    write(tmp_path / "ccg.train", [f"{' '.join(['w'] * 20)}\t{frequent}", "The dog barks .\tNP/N N S[dcl]\\NP ."])
    write(tmp_path / "ccg.test", ["Dogs|NNS|N bark|VBP|S[dcl]\\NP .|.|."])
    ccg = task("ccg", tmp_path)
    assert ccg.labels == ("N", "NP/N", "UNK")                          # 11 N, 11 NP/N; others < 10
    assert read_ccg(tmp_path / "ccg.test") == [{"tokens": ["Dogs", "bark", "."],
                                                "tags": ["N", "S[dcl]\\NP", "."]}]
    test = ccg.load("test", "en")
    assert test["tokens"] == [["Dogs", "bark", "."]] and test["tags"] == [[0, 2, 2]]
    train = ccg.load("train", "en")
    assert train["tags"][1] == [1, 0, 2, 2]
    (tmp_path / "tags_to_id.json").write_text(json.dumps({"N": 1, "NP/N": 0, "S[dcl]\\NP": 2}))
    os.utime(tmp_path / "ccg.train", (1, 1))       # a new file signature: the vocabulary is re-read
    assert task("ccg", tmp_path).labels == ("NP/N", "N", "S[dcl]\\NP", "UNK")


def test_ccg_without_data_dir_says_it_is_licensed():
    ccg = task("ccg", None)
    assert ccg.info.required_options == ("data_dir",) and not ccg.info.target
    with pytest.raises(TaskDataError, match=r"^task ccg: CCGbank is licensed .*set tasks.ccg.data_dir"):
        ccg.labels
    with pytest.raises(TaskDataError, match="CCGbank is licensed"):
        ccg.load("train", "en")


def test_anli_plus_concatenates_snli_mnli_and_anli_rounds(tmp_path):
    write_mnli(tmp_path)
    snli = [{"sentence1": "A man.", "sentence2": "A person.", "gold_label": "entailment"},
            {"sentence1": "A man.", "sentence2": "?", "gold_label": "-"},
            {"sentence1": "A dog.", "sentence2": "A cat.", "gold_label": "contradiction"}]
    write(tmp_path / "snli_1.0" / "snli_1.0_train.jsonl", [json.dumps(r) for r in snli])
    for r, n in (("R1", 1), ("R2", 2), ("R3", 3)):
        for split in ("train", "dev"):
            write(tmp_path / "anli_v1.0" / r / f"{split}.jsonl",
                  [json.dumps({"uid": f"{r}{i}", "context": f"ctx {r}", "hypothesis": f"h{i}",
                               "label": "enc"[i % 3], "reason": ""}) for i in range(n)])
    anli = task("anli_plus", tmp_path)
    train = anli.load("train", "en")
    assert len(train) == 2 + 6 + 1 + 2 + 3
    assert train["label"][:2] == [0, 2] and train["text_a"][-1] == "ctx R3"
    assert train["label"][-3:] == [0, 1, 2]
    dev = anli.load("dev", "en")
    assert len(dev) == 3 + 6                                          # MNLI matched + ANLI dev
    with pytest.raises(TaskDataError,
                       match=r"task anli_plus: test split for language 'en' not found at .*R1/test.jsonl"):
        anli.load("test", "en")


def test_hub_class_labels_are_mapped_by_name():
    pairs = datasets.Dataset.from_dict(
        {"premise": ["p", "q", "r"], "hypothesis": ["h", "i", "j"], "label": [0, 1, -1]},
        features=datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["contradiction", "entailment"])}))
    data = hub_pairs(pairs, "premise", "hypothesis", "label", ("entailment", "neutral", "contradiction"))
    assert data["label"] == [2, 0] and data.column_names == ["text_a", "text_b", "label"]
    tags = datasets.Dataset.from_dict(
        {"tokens": [["Ana", "ran"]], "ner_tags": [[1, 0]]},
        features=datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                    "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER"]))}))
    assert hub_tags(tags, "tokens", "ner_tags", ("B-PER", "O"))["tags"] == [[0, 1]]


@pytest.mark.parametrize("name, split, language, expected", [
    ("mnli", "dev", "en", "MNLI/dev_matched.tsv"), ("qqp", "train", "en", "QQP/train.tsv"),
    ("xnli", "test", "de", "xnli.test.tsv"), ("pawsx", "dev", "fr", "fr/dev_2k.tsv"),
    ("panx", "train", "en", "panx/en/train"), ("ccg", "train", "en", "ccg.train"),
    ("anli_plus", "train", "en", "snli_1.0_train.jsonl"),
])
def test_missing_files_are_one_line_naming_task_split_and_path(tmp_path, name, split, language, expected):
    with pytest.raises(TaskDataError) as error:
        task(name, tmp_path / "nowhere").load(split, language)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"task {name}: {split} split")
    assert str(tmp_path / "nowhere") in message and expected in message


# --- trials ----------------------------------------------------------------------------------

def test_xnli_target_trial_on_upstream_files(tmp_path, small_model):
    write_mnli(tmp_path / "data", n_train=40)
    write_xnli(tmp_path / "data", "dev", {"en": 9})
    write_xnli(tmp_path / "data", "test", {"en": 6, "de": 7, "fr": 3})
    result = run_trial({"trial_id": "t", "job_id": "j", "stage": "target", "model": str(small_model),
                        "tasks": ["xnli"], "languages": ["en", "de"], "seed": 1, "hparams": HP,
                        "task_options": {"xnli": {"data_dir": str(tmp_path / "data")}},
                        "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                        "num_threads": 1})
    m = result["metrics"]
    assert m["xnli/n/en"] == 6 and m["xnli/n/de"] == 7
    for lang, n in (("en", 6), ("de", 7)):
        assert round(m[f"xnli/accuracy/{lang}"] * n) == pytest.approx(m[f"xnli/accuracy/{lang}"] * n)
    assert 0 <= m["dev/score"] <= 1 and result["best_epoch"] == 0


def _conllu_slice(source: Path, target: Path, start: int, count: int) -> int:
    blocks = [b for b in source.read_text(encoding="utf-8").split("\n\n") if b.strip()][start:start + count]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return len(blocks)


@pytest.mark.skipif(not (SHARED / "ud").is_dir(), reason="shared UD data absent")
def test_udpos_trained_on_english_ud_evaluated_on_german(tmp_path, small_model):
    data = tmp_path / "ud"
    _conllu_slice(SHARED / "ud" / "en_ewt-ud-dev.conllu", data / "en_ewt-ud-train.conllu", 0, 160)
    _conllu_slice(SHARED / "ud" / "en_ewt-ud-dev.conllu", data / "en_ewt-ud-dev.conllu", 160, 40)
    n_de = _conllu_slice(SHARED / "ud" / "de_gsd-ud-test.conllu", data / "de_gsd-ud-test.conllu", 0, 60)
    result = run_trial({"trial_id": "t", "job_id": "j", "stage": "target", "model": str(small_model),
                        "tasks": ["udpos"], "languages": ["de"], "seed": 1,
                        "hparams": {**HP, "learning_rate": 3e-3},
                        "task_options": {"udpos": {"data_dir": str(data)}},
                        "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                        "num_threads": 1})
    m = result["metrics"]
    assert m["udpos/n/de"] == n_de == 60
    assert 0.0 <= m["udpos/f1/de"] <= 1.0 and 0.0 < m["udpos/accuracy/de"] <= 1.0
    assert m["udpos/f1/avg"] == m["udpos/f1/de"]
    # a trained tagger beats always-the-most-frequent-tag on English dev at least
    assert m["dev/score"] > 0.2
