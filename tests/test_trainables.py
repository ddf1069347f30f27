"""Inside a trial: readers, metrics, the multi-task sampler, and a trial's own resume."""
from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from trainables.families.retrieval import Retrieval, default_layer
from trainables.formats import read_conllu
from trainables.train import Mixing, MultiTaskBatches
from trainables.trial import run_trial

HP = dict(learning_rate=1e-3, batch_size=16, eval_batch_size=64, epochs=2, max_length=48,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


def test_conllu_reader_skips_multiword_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "x.conllu"
    rows = ["# sent_id = 1", "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_",
            "2-3\tdel\t_\t_\t_\t_\t_\t_\t_\t_", "2\tde\tde\tADP\t_\t_\t4\tcase\t_\t_",
            "3\tel\tel\tDET\t_\t_\t4\tdet\t_\t_", "3.1\tfoo\t_\tX\t_\t_\t_\t_\t_\t_",
            "4\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_", "", "1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_", ""]
    path.write_text("\n".join(rows) + "\n")
    sents = read_conllu(path)
    assert sents == [{"tokens": ["Vamos", "de", "el", "mar"], "tags": ["VERB", "ADP", "DET", "NOUN"]},
                     {"tokens": ["Hi"], "tags": ["INTJ"]}]


def test_conllu_reader_rejects_other_formats(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text("1 word NOUN\n")
    with pytest.raises(ValueError, match="bad.conllu"):
        read_conllu(path)


def test_top1_retrieval_accuracy_counts_aligned_nearest_neighbours():
    keys = np.eye(4, dtype="float32")
    queries = keys[[0, 1, 3, 2]].copy()          # rows 2 and 3 swapped: 2 of 4 correct
    assert Retrieval.top1_accuracy(queries, keys) == 0.5
    assert Retrieval.top1_accuracy(keys, keys) == 1.0


def test_default_retrieval_layer_scales_xtreme_choice():
    assert default_layer(24) == 14 and default_layer(12) == 7 and default_layer(2) == 1


def test_multitask_batches_cover_every_example_once_in_proportion():
    features = {"a": datasets.Dataset.from_dict({"x": list(range(90))}),
                "b": datasets.Dataset.from_dict({"x": list(range(1000, 1030))})}
    batches = MultiTaskBatches(features, {"a": list, "b": list}, batch_size=10)
    order = list(batches.epoch(seed=3, epoch=0))
    assert batches.steps_per_epoch() == len(order) == 12
    seen = sorted(row["x"] for _, rows in order for row in rows)
    assert seen == list(range(90)) + list(range(1000, 1030))
    assert [n for n, _ in order] == [n for n, _ in batches.epoch(seed=3, epoch=0)]   # replayable
    assert [n for n, _ in order] != [n for n, _ in batches.epoch(seed=3, epoch=1)]   # reshuffled
    # sampling in proportion to size: task b's 3 batches are spread out, not all at the end
    positions = [i for i, (n, _) in enumerate(order) if n == "b"]
    assert positions[0] < 9


def test_multitask_batches_cap_examples_per_epoch_and_redraw_them():
    features = {"a": datasets.Dataset.from_dict({"x": list(range(100))}),
                "b": datasets.Dataset.from_dict({"x": list(range(1000, 1020))})}
    batches = MultiTaskBatches(features, {"a": list, "b": list}, batch_size=10,
                               mixing={"a": Mixing(examples_cap=30)})
    first = list(batches.epoch(seed=1, epoch=0))
    assert batches.steps_per_epoch() == len(first) == 5                     # 3 capped + 2
    a_rows = [r["x"] for n, rows in first if n == "a" for r in rows]
    assert len(a_rows) == len(set(a_rows)) == 30
    second = [r["x"] for n, rows in batches.epoch(seed=1, epoch=1) if n == "a" for r in rows]
    assert set(second) != set(a_rows)                                       # a fresh draw each epoch


def test_multitask_batches_follow_given_probabilities():
    features = {"a": datasets.Dataset.from_dict({"x": list(range(50))}),
                "b": datasets.Dataset.from_dict({"x": list(range(1000, 1050))})}
    batches = MultiTaskBatches(features, {"a": list, "b": list}, batch_size=1,
                               mixing={"a": Mixing(probability=0.9), "b": Mixing(probability=0.1)})
    names = [n for e in range(4) for n, _ in batches.epoch(seed=0, epoch=e)]
    assert len(names) == 400
    assert 0.85 < names.count("a") / len(names) < 0.95       # not the 50/50 of proportional mixing
    with pytest.raises(ValueError, match="every task or none"):
        MultiTaskBatches(features, {"a": list, "b": list}, 1, mixing={"a": Mixing(probability=0.5)})


def test_length_grouping_batches_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=400)
    data = datasets.Dataset.from_dict({"input_ids": [[1] * int(n) for n in lengths]})
    pad_waste = {}
    for grouped in (False, True):
        batches = MultiTaskBatches({"t": data}, {"t": list}, batch_size=16, group_by_length=grouped)
        waste = 0
        seen = []
        for _, rows in batches.epoch(seed=0, epoch=0):
            sizes = [len(r["input_ids"]) for r in rows]
            waste += max(sizes) * len(sizes) - sum(sizes)
            seen += sizes
        assert sorted(seen) == sorted(int(n) for n in lengths)          # every example once
        pad_waste[grouped] = waste
    assert pad_waste[True] < pad_waste[False] / 5


def _trial(tmp_path, toy_root, model, **fields):
    options = {t: {"data_dir": str(toy_root)} for t in ("toy_chunk", "toy_paraphrase", "toy_xnli")}
    return {"trial_id": "t", "job_id": "j", "stage": "intermediate", "model": str(model),
            "tasks": ["toy_chunk", "toy_paraphrase"], "seed": 7, "hparams": HP,
            "task_options": options, "output_dir": str(tmp_path / "out"), "num_threads": 1, **fields}


def test_multitask_intermediate_then_target_trial(tmp_path, toy_root, small_model):
    from transformers import AutoModel

    reports: list[dict] = []
    inter = run_trial(_trial(tmp_path, toy_root, small_model), report=reports.append)
    epochs = [r for r in reports if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[1]["train/loss"] < epochs[0]["train/loss"]
    assert reports[-1]["done"] and inter["metrics"]["dev/score"] == max(r["dev/score"] for r in epochs)
    assert AutoModel.from_pretrained(inter["model_dir"]).config.model_type == "xlm-roberta"

    target = run_trial(_trial(tmp_path, toy_root, small_model, stage="target", tasks=["toy_xnli"],
                              languages=["en", "xs"], init_from=inter["model_dir"],
                              output_dir=str(tmp_path / "target")))
    m = target["metrics"]
    assert {"toy_xnli/accuracy/en", "toy_xnli/accuracy/xs", "toy_xnli/accuracy/avg"} <= set(m)
    assert m["toy_xnli/accuracy/avg"] == pytest.approx((m["toy_xnli/accuracy/en"] + m["toy_xnli/accuracy/xs"]) / 2)
    assert m["toy_xnli/n/xs"] == 60


@pytest.mark.parametrize("freeze", [0, 1])
def test_freeze_embeddings_keeps_the_word_embeddings_and_trains_the_rest(tmp_path, toy_root, small_model, freeze):
    from transformers import AutoModel

    result = run_trial(_trial(tmp_path, toy_root, small_model, tasks=["toy_xnli"],
                              hparams={**HP, "epochs": 1, "freeze_embeddings": freeze}))
    before, after = AutoModel.from_pretrained(str(small_model)), AutoModel.from_pretrained(result["model_dir"])
    words = before.get_input_embeddings().weight, after.get_input_embeddings().weight
    assert torch.equal(*words) == bool(freeze)
    layer = before.encoder.layer[0].attention.self.query.weight, after.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(*layer)  # the layers above learn either way


def test_interrupted_trial_resumes_from_its_last_epoch(tmp_path, toy_root, small_model):
    reference = run_trial(_trial(tmp_path / "ref", toy_root, small_model))

    def stop_after_first_epoch(metrics):
        if metrics.get("epoch") == 1:
            raise KeyboardInterrupt

    cfg = _trial(tmp_path / "cut", toy_root, small_model)
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, report=stop_after_first_epoch)
    assert not (tmp_path / "cut" / "out" / "result.json").exists()
    assert not (tmp_path / "cut" / "out" / "error.txt").exists()  # an interrupt is not an error

    reports: list[dict] = []
    resumed = run_trial(cfg, report=reports.append)
    assert [r["epoch"] for r in reports if "epoch" in r] == [2]        # epoch 1 was not redone
    assert resumed["resumed_from_epoch"] == 1 and reference["resumed_from_epoch"] is None  # and it says so
    assert resumed["metrics"]["dev/score"] == pytest.approx(reference["metrics"]["dev/score"], abs=1e-6)
    again = run_trial(cfg)                                              # complete: returns the record
    assert json.dumps(again, sort_keys=True) == json.dumps(resumed, sort_keys=True)


def test_missing_data_is_one_line_naming_task_split_and_path(tmp_path, small_model):
    cfg = _trial(tmp_path, tmp_path / "nowhere", small_model, tasks=["toy_xnli"])
    with pytest.raises(Exception, match=r"task toy_xnli: train split for language 'en' not found at .*nowhere"):
        run_trial(cfg)
    error = (tmp_path / "out" / "error.txt").read_text()
    assert error.count("\n") == 1 and "nowhere" in error


def test_retrieval_layer_option_is_used_and_checked(tmp_path, toy_root, small_model):
    from trainables.model import build_model
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions

    model, tokenizer = build_model(str(small_model), [])
    sentences = ["Anna 3 .", "Sofia 12 ."]
    embed = lambda layer: Retrieval().embed(model, sentences, tokenizer, batch_size=2,  # noqa: E731
                                            max_length=16, layer=layer)
    assert not np.allclose(embed(0), embed(2))
    assert np.allclose(embed(None), embed(default_layer(model.encoder.config.num_hidden_layers)))
    task = build_task("toy_tatoeba", TaskOptions(data_dir=str(toy_root), layer=9))
    with pytest.raises(ValueError, match="retrieval layer 9 does not exist"):
        Retrieval().evaluate(task, model, task.load("test", "xs"), tokenizer, batch_size=8, max_length=16)


def test_mlm_mixed_into_intermediate_training_is_not_used_for_selection(tmp_path, toy_root, small_model):
    options = {"toy_paraphrase": {"data_dir": str(toy_root)},
               "mlm": {"corpus": str(toy_root / "corpus"), "corpus_languages": ["xs", "xo"]}}
    reports: list[dict] = []
    result = run_trial(_trial(tmp_path, toy_root, small_model, tasks=["toy_paraphrase", "mlm"],
                              task_options=options), report=reports.append)
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions

    mlm = build_task("mlm", TaskOptions.from_dict(options["mlm"], str(tmp_path)))
    train, dev = mlm.load("train", "en"), mlm.load("dev", "en")
    from collections import Counter

    corpus = Counter(line for l in ("xs", "xo") for line in (toy_root / "corpus" / f"{l}.txt").read_text().splitlines())
    assert 0 < len(dev) < len(train)
    # train and dev partition the corpus' lines (a sentence the corpus holds twice may land in both)
    assert Counter(train["text"]) + Counter(dev["text"]) == corpus
    # the dev score that selects the model is the paraphrase accuracy alone
    assert 0.0 <= result["metrics"]["dev/score"] <= 1.0
    import torch

    heads = torch.load(tmp_path / "out" / "model" / "heads.pt", weights_only=True)
    assert any(k.startswith("mlm.") for k in heads) and any(k.startswith("toy_paraphrase.") for k in heads)


def test_translated_training_data_is_appended_and_checked(tmp_path, toy_root):
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskDataError, TaskOptions

    english = build_task("toy_xnli", TaskOptions(data_dir=str(toy_root))).load("train", "en")
    translated = tmp_path / "xnli.xs.jsonl"
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": "neutral"} for i in range(7)]
    translated.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = build_task("toy_xnli", TaskOptions(data_dir=str(toy_root), train_examples=20,
                                              translated_train=(str(translated),)))
    # the task's raw schema is text_a/text_b/label: the upstream-named file is rejected clearly
    with pytest.raises(TaskDataError, match=r"translated_train .*xnli.xs.jsonl lacks columns"):
        task.load_train()
    translated.write_text("\n".join(json.dumps({"text_a": r["premise"], "text_b": r["hypothesis"],
                                                "label": 1}) for r in rows) + "\n")
    data = task.load_train()
    assert len(data) == 27 and data["text_a"][-7:] == [f"p{i}" for i in range(7)]
    assert data.features == english.features


def test_features_are_cached_across_processes_for_in_memory_datasets(tmp_path, toy_root, small_model):
    import subprocess
    import sys

    code = f"""
import time, datasets
from transformers import AutoTokenizer
from trainables.families import get_family
from trainables.families.base import set_feature_cache
from trainables.tasks import build_task
from trainables.tasks.base import TaskOptions
datasets.disable_progress_bars()
set_feature_cache({str(tmp_path / 'features')!r})
task = build_task("toy_pos", TaskOptions(data_dir={str(toy_root)!r}))
tok = AutoTokenizer.from_pretrained({str(small_model)!r})
feats = get_family("tagging").featurize(task, task.load("test", "xs"), tok, 48)
print(feats.cache_files[0]["filename"] if feats.cache_files else "none")
"""
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith(str(tmp_path / "features"))
    assert len(list((tmp_path / "features").glob("tagging-*.arrow"))) == 1


def test_raw_cache_reuses_parsed_files_until_one_changes(tmp_path, toy_root):
    import shutil

    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions

    data = tmp_path / "data"
    shutil.copytree(toy_root / "toy_pos", data / "toy_pos")
    options = TaskOptions(data_dir=str(data), cache_dir=str(tmp_path / "cache"))
    first = build_task("toy_pos", options).load("test", "xs")
    entries = list((tmp_path / "cache" / "raw").iterdir())
    assert len(entries) == 1 and first.cache_files                  # parsed once, then memory-mapped
    again = build_task("toy_pos", options).load("test", "xs")
    assert again["tokens"] == first["tokens"] and len(list((tmp_path / "cache" / "raw").iterdir())) == 1
    conllu = data / "toy_pos" / "test-xs.conllu"
    conllu.write_text(conllu.read_text().split("\n\n", 1)[1])       # drop the first sentence
    edited = build_task("toy_pos", options).load("test", "xs")
    assert len(edited) == len(first) - 1                              # the edit is seen


def test_missing_lexicon_for_a_language_skips_that_perturbation_there(tmp_path, toy_root, small_model, caplog):
    """A ``{language}`` lexicon with no file for one evaluated language (English here) skips the
    perturbation for that language only, with a log line and no metric; the trial completes."""
    import logging

    from trainables.records import perturbation_label

    (tmp_path / "en-xs.txt").write_text("dog Hund\ncat Katze\n")
    lexicon = str(tmp_path / "en-{language}.txt")
    perturbations = [{"name": "code_switch", "rate": 1.0, "lexicon": lexicon},
                     {"name": "attack", "budget": 1, "typos": 0, "lexicon": lexicon}]
    cfg = _trial(tmp_path, toy_root, small_model, stage="eval", tasks=["toy_xnli"], languages=["en", "xs"],
                 settings={"perturbations": perturbations})
    with caplog.at_level(logging.INFO, logger="trainables.trial"):
        result = run_trial(cfg)
    m = result["metrics"]
    for config in perturbations:
        label = f"toy_xnli.{perturbation_label(config)}"
        assert f"{label}/accuracy/xs" in m and f"{label}/drop/xs" in m
        assert not any(k.startswith(f"{label}/") and k.endswith("/en") for k in m)
        assert m[f"{label}/accuracy/avg"] == m[f"{label}/accuracy/xs"]  # over the languages it ran in
    assert "toy_xnli/accuracy/en" in m
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() and " en" in r.getMessage()]
    assert len(skipped) == 2 and all("en-en.txt" in s for s in skipped), skipped


@pytest.mark.parametrize("method", ["freelb", "smart"])
def test_adversarial_multitask_intermediate_trial(tmp_path, toy_root, small_model, method, monkeypatch):
    """``hparams.adversarial`` names a method (its defaults): the multi-task step (a tagging and a
    classification task) trains with it, and the trial completes with finite losses."""
    import math

    import trainables.trial.training
    from trainables.adversarial import METHODS, build_step

    calls: list[tuple[str, float]] = []

    def counting_build_step(config):
        step = build_step(config)
        assert isinstance(step, METHODS[method]) and config == {"method": method}

        def counted(model, task, batch, backward):
            calls.append((task.name, step(model, task, batch, backward)))
            return calls[-1][1]
        return counted

    monkeypatch.setattr(trainables.trial.training, "build_step", counting_build_step)
    reports: list[dict] = []
    result = run_trial(_trial(tmp_path, toy_root, small_model, hparams={**HP, "epochs": 1, "adversarial": method}),
                       report=reports.append)
    assert {name for name, _ in calls} == {"toy_chunk", "toy_paraphrase"}  # both tasks' batches
    assert all(math.isfinite(loss) for _, loss in calls)
    epochs = [r for r in reports if "epoch" in r]
    assert len(epochs) == 1 and math.isfinite(epochs[0]["train/loss"]) and epochs[0]["train/loss"] > 0
    assert reports[-1]["done"] and math.isfinite(result["metrics"]["dev/score"])
    assert result["hparams"]["adversarial"] == method and result["model_dir"]


def test_family_list_comes_from_the_families_package(tmp_path, monkeypatch):
    """One new file in ``trainables/families`` is a new family for tasks too (no list to edit)."""
    import subprocess
    import sys

    import trainables.families as families
    from trainables.families import _FAMILIES, _load_all, family_names
    from trainables.tasks.base import TaskInfo

    _load_all()
    assert set(family_names()) == set(_FAMILIES) and "dual_encoder" in family_names()
    with pytest.raises(ValueError, match=r"unknown family 'tagger' \(known: classification, "):
        TaskInfo(name="t", family="tagger", languages=("en",), main_metric="f1", source="x")
    # a new module declaring a subclass (of a subclass) of Family: listed without being imported
    package = tmp_path / "families"
    package.mkdir()
    (package / "base.py").write_text("class Family: name = 'not_a_family'\n")
    (package / "extra.py").write_text("from trainables.families.tagging import Tagging\n"
                                      "class Helper:\n    name = 'helper'\n"
                                      "class Chunking(Tagging):\n    name: str = 'chunking'\n")
    monkeypatch.setattr(families, "__path__", [*families.__path__, str(package)])
    family_names.cache_clear()
    try:
        assert "chunking" in family_names() and "helper" not in family_names()
        assert "not_a_family" not in family_names()
    finally:
        family_names.cache_clear()
    # planning builds TaskInfo for every task without importing torch
    code = ("import sys; from trainables.tasks import task_names, task_info; "
            "[task_info(t) for t in task_names()]; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_raw_cache_is_shared_across_processes(tmp_path, toy_root):
    """A new trial process finds what an earlier one parsed (the key holds no memory address)."""
    import subprocess
    import sys

    code = f"""
from trainables.tasks import build_task
from trainables.tasks.base import TaskOptions
options = TaskOptions(data_dir={str(toy_root)!r}, cache_dir={str(tmp_path / 'cache')!r})
print(build_task("toy_pos", options).load("test", "xs").cache_files[0]["filename"])
"""
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(list((tmp_path / "cache" / "raw").iterdir())) == 1


def test_code_digest_follows_nested_code_not_addresses():
    from trainables.raw_cache import code_digest

    def make(offset):
        def load(rows):
            return [(lambda r: r + offset)(r) for r in rows]
        return load

    def other(rows):
        return [(lambda r: r * 2)(r) for r in rows]

    assert code_digest(make(1).__code__) == code_digest(make(2).__code__)   # same code, new objects
    assert code_digest(make(1).__code__) != code_digest(other.__code__)


def test_mlm_single_file_corpus_is_read_once_whatever_the_languages(tmp_path, toy_root):
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskDataError, TaskOptions

    corpus = toy_root / "corpus" / "xs.txt"
    lines = [l for l in corpus.read_text().splitlines() if l.strip()]
    mlm = build_task("mlm", TaskOptions(corpus=str(corpus), corpus_languages=("xs", "xo")))
    assert len(mlm.load("train", "en")) + len(mlm.load("dev", "en")) == len(lines)
    templated = build_task("mlm", TaskOptions(corpus="no-such-org/corpus:{language}"))
    with pytest.raises(TaskDataError, match="corpus_languages"):
        templated.load("train", "en")
