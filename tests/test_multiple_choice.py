"""Multiple choice: the family's shapes and scoring, the MC task loaders, and a trial end to end."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from trainables.families.multiple_choice import MultipleChoice, best_choice, choice_dataset
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import build_task
from trainables.tasks.base import TaskDataError, TaskOptions
from trainables.trial import run_trial

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HP = dict(learning_rate=1e-3, batch_size=8, eval_batch_size=16, epochs=1, max_length=32,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _copa(n: int, lang: str) -> list[dict]:
    return [{"premise": f"{lang} premise {i} .", "choice1": f"{lang} first {i} .", "choice2": f"{lang} second {i} .",
             "question": "cause" if i % 2 else "effect", "label": i % 2, "idx": i} for i in range(n)]


def _hellaswag(n: int) -> list[dict]:
    return [{"ctx": f"Anna walks {i} .", "endings": [f"end {j} {i} ." for j in range(4)], "label": i % 4,
             "activity_label": "walking"} for i in range(n)]


@pytest.fixture()
def mc_root(tmp_path) -> Path:
    """HellaSwag-like English files and XCOPA files for 2 languages (upstream nested layout)."""
    root = tmp_path / "mc"
    _jsonl(root / "hellaswag_train.jsonl", _hellaswag(24))
    _jsonl(root / "hellaswag_val.jsonl", _hellaswag(8))
    _jsonl(root / "train.en.jsonl", _copa(24, "en"))
    _jsonl(root / "val.en.jsonl", _copa(8, "en"))
    for lang in ("et", "id"):
        _jsonl(root / lang / f"test.{lang}.jsonl", _copa(10, lang))
        _jsonl(root / lang / f"val.{lang}.jsonl", _copa(4, lang))
    return root


# --- family ---

def test_featurize_collate_and_forward_shapes(small_model):
    from trainables.model import build_model

    task = build_task("hellaswag")
    family = MultipleChoice()
    model, tokenizer = build_model(str(small_model), [task])
    data = choice_dataset(["a b", "c"], ["q .", ""], [["x", "y", "z"], ["u", "v"]], [2, 1])
    features = family.featurize(task, data, tokenizer, 16)
    assert [len(f) for f in features["input_ids"]] == [3, 2]          # one sequence per choice
    assert tokenizer.decode(features["input_ids"][0][1]).endswith("</s></s> q . y</s>")  # question, choice
    batch = family.collator(tokenizer)([features[i] for i in range(2)])
    b, c, length = batch["input_ids"].shape
    assert (b, c) == (2, 3) and batch["choice_mask"].tolist() == [[True, True, True], [True, True, False]]
    model.eval()
    with torch.no_grad():
        logits = family.forward(model, model.heads[task.name], batch)
    assert logits.shape == (2, 3) and logits[1, 2] < -1e30 and torch.isfinite(logits[0]).all()
    loss = family.loss(logits, batch)
    expected = -(torch.log_softmax(logits[0], -1)[2] + torch.log_softmax(logits[1, :2], -1)[1]) / 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_best_choice_is_the_plain_argmax():
    """XTREME's run_xcopa.py: np.argmax over the choice logits; no tolerance for near ties."""
    low = torch.finfo(torch.float32).min
    logits = torch.tensor([[2.0, 2.0 + 1e-6, 1.0],    # a rounding-level difference still wins
                           [2.0, 2.1, 1.0],
                           [-3.0, -3.0, low],         # an exact tie: the first, a masked choice
                           [low, 0.5, 0.5]])
    assert best_choice(logits).tolist() == [1, 1, 0, 1]


def test_accuracy_is_the_share_of_argmax_hits(small_model):
    """Accuracy = share of examples whose highest-scoring choice is the label (by hand from the
    family's own logits, read in a separate forward pass)."""
    from trainables.model import build_model

    task = build_task("xcopa")
    model, tokenizer = build_model(str(small_model), [task])
    model.eval()
    data = choice_dataset(["p one", "p two", "p three", "p four"], [""] * 4,
                          [["a cat", "the dog sat"], ["red", "blue sky"], ["x y", "z"], ["up", "down"]],
                          [0, 1, 0, 1])
    family = MultipleChoice()
    result = family.evaluate(task, model, data, tokenizer, batch_size=4, max_length=16)
    features = family.featurize(task, data, tokenizer, 16)
    batch = family.collator(tokenizer)([features[i] for i in range(len(features))])
    with torch.no_grad():
        logits = family.forward(model, model.heads[task.name], batch)
    hits = [int(logits[i].argmax()) == label for i, label in enumerate([0, 1, 0, 1])]
    assert result == {"accuracy": sum(hits) / 4, "n": 4.0}


# --- loaders ---

def test_hellaswag_loader_and_splits(mc_root, tmp_path):
    task = build_task("hellaswag", TaskOptions(data_dir=str(mc_root), cache_dir=str(tmp_path / "c")))
    train = task.load("train", "en")
    assert len(train) == 24 and train[5] == {"context": "Anna walks 5 .", "question": "",
                                             "choices": [f"end {j} 5 ." for j in range(4)], "label": 1}
    assert len(task.load("dev", "en")) == 8
    with pytest.raises(TaskDataError, match="test labels are hidden"):
        task.load("test", "en")
    assert not task.info.target and task.info.intermediate


def test_cosmosqa_csv_and_commonsenseqa_jsonl(tmp_path):
    root = tmp_path / "cosmos"
    root.mkdir()
    fields = ["id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label"]
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerow({"id": "1", "context": "He said, \"hi\".", "question": "Why?", "answer0": "a",
                         "answer1": "b", "answer2": "c", "answer3": "d", "label": "2"})
    cosmos = build_task("cosmosqa", TaskOptions(data_dir=str(root), cache_dir=str(tmp_path / "c")))
    assert cosmos.load("train", "en")[0] == {"context": "He said, \"hi\".", "question": "Why?",
                                             "choices": ["a", "b", "c", "d"], "label": 2}
    with pytest.raises(TaskDataError, match=r"task cosmosqa: dev split for language 'en' not found at .*valid.csv"):
        cosmos.load("dev", "en")

    csqa_root = tmp_path / "csqa"
    row = {"answerKey": "C", "id": "x", "question": {"question_concept": "c", "stem": "Where?",
           "choices": [{"label": l, "text": f"t{l}"} for l in "ABCDE"]}}
    _jsonl(csqa_root / "dev_rand_split.jsonl", [row, {**row, "answerKey": "Z"}])
    csqa = build_task("commonsenseqa", TaskOptions(data_dir=str(csqa_root), cache_dir=str(tmp_path / "c")))
    with pytest.raises(TaskDataError, match="answerKey 'Z' not among choices"):
        csqa.load("dev", "en")
    _jsonl(csqa_root / "dev_rand_split.jsonl", [row])
    assert csqa.load("dev", "en")[0] == {"context": "Where?", "question": "", "choices": [f"t{l}" for l in "ABCDE"],
                                         "label": 2}


def test_xcopa_loader_questions_layouts_and_english_train(mc_root, tmp_path):
    task = build_task("xcopa", TaskOptions(data_dir=str(mc_root), cache_dir=str(tmp_path / "c")))
    test = task.load("test", "et")
    assert len(test) == 10 and test[0] == {"context": "et premise 0 .", "question": "What happened as a result?",
                                           "choices": ["et first 0 .", "et second 0 ."], "label": 0}
    assert test[1]["question"] == "What was the CAUSE of this?"
    assert len(task.load("dev", "id")) == 4
    assert task.english_source() == "siqa"                  # the class default
    assert len(task.load("train", "en")) == 24             # COPA-format file, whatever the option
    siqa = [{"context": "Kai ate.", "question": "Why?", "answerA": "hungry", "answerB": "sad",
             "answerC": "late", "label": "1"}]
    siqa_root = tmp_path / "siqa"
    _jsonl(siqa_root / "train.en.jsonl", siqa)
    siqa_task = build_task("xcopa", TaskOptions(data_dir=str(siqa_root), cache_dir=str(tmp_path / "c")))
    assert siqa_task.load("train", "en")[0] == {"context": "Kai ate.", "question": "Why?",
                                                "choices": ["hungry", "sad", "late"], "label": 0}
    bad = build_task("xcopa", TaskOptions(data_dir=str(mc_root), english_train="piqa"))
    with pytest.raises(TaskDataError, match="english_train 'piqa'"):
        bad.english_source()
    with pytest.raises(TaskDataError, match=r"task xcopa: test split for language 'ht' not found at .*test.ht.jsonl"):
        task.load("test", "ht")
    with pytest.raises(TaskDataError, match="not an XCOPA language"):
        task.load("test", "de")


# --- end to end ---

def test_hellaswag_intermediate_then_xcopa_target_trial(mc_root, tmp_path, small_model):
    options = {"hellaswag": {"data_dir": str(mc_root)}, "xcopa": {"data_dir": str(mc_root)}}
    base = {"trial_id": "t", "job_id": "j", "model": str(small_model), "seed": 3, "hparams": HP,
            "task_options": options, "num_threads": 1, "cache_dir": str(tmp_path / "cache")}
    inter = run_trial({**base, "stage": "intermediate", "tasks": ["hellaswag"],
                       "output_dir": str(tmp_path / "inter")})
    assert 0.0 <= inter["metrics"]["dev/score"] <= 1.0 and inter["model_dir"]
    target = run_trial({**base, "stage": "target", "tasks": ["xcopa"], "languages": ["et", "id"],
                        "init_from": inter["model_dir"], "output_dir": str(tmp_path / "target")})
    m = target["metrics"]
    for lang in ("et", "id"):
        assert m[f"xcopa/n/{lang}"] == 10
        assert m[f"xcopa/accuracy/{lang}"] * 10 == pytest.approx(round(m[f"xcopa/accuracy/{lang}"] * 10))
    assert m["xcopa/accuracy/avg"] == pytest.approx((m["xcopa/accuracy/et"] + m["xcopa/accuracy/id"]) / 2)
    assert 0.0 <= m["dev/score"] <= 1.0


@pytest.mark.skipif(not (SHARED / "xcopa").is_dir(), reason="no shared xcopa data")
def test_xcopa_real_data_every_language(tmp_path, small_model):
    from trainables.model import build_model

    task = build_task("xcopa", TaskOptions(data_dir=str(SHARED / "xcopa"), cache_dir=str(tmp_path)))
    model, tokenizer = build_model(str(small_model), [task])
    model.eval()
    for lang in TASK_LANGUAGES["xcopa"]:
        test, dev = task.load("test", lang), task.load("dev", lang)
        assert (len(test), len(dev)) == (500, 100)
        assert all(len(c) == 2 for c in test["choices"]) and set(test["label"]) == {0, 1}
        # (the shared th file marks every item "effect", so only a subset check per language)
        assert set(test["question"]) <= {"What was the CAUSE of this?", "What happened as a result?"}
        result = MultipleChoice().evaluate(task, model, test.select(range(20)), tokenizer,
                                           batch_size=20, max_length=48)
        assert result["n"] == 20 and result["accuracy"] * 20 == pytest.approx(round(result["accuracy"] * 20))
