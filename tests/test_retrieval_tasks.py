"""Retrieval: metrics by hand (top-1 ties, mAP@k, BUCC margin mining), loaders, the dual encoder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.families.retrieval import DualEncoder, Retrieval, pool_dataset, split_pool
from trainables.languages import TASK_LANGUAGES
from trainables.metrics import retrieval as rm
from trainables.tasks import build_task
from trainables.tasks.base import TaskDataError, TaskOptions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def unit(*rows) -> np.ndarray:
    a = np.asarray(rows, dtype="float32")
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# --- metrics ---

def test_top1_ties_go_to_the_lowest_index():
    keys = unit([1, 0], [1, 0], [0, 1])          # keys 0 and 1 identical
    assert rm.top1_accuracy(keys, keys) == pytest.approx(2 / 3)   # query 1 retrieves key 0: a miss
    assert Retrieval.top1_accuracy(keys[[0, 2]], keys[[0, 2]]) == 1.0


def test_average_precision_at_k_by_hand():
    # relevant at ranks 2 and 4: (1/2 + 2/4) / min(20, 2) = 0.5
    assert rm.average_precision_at_k([3, 1, 2, 0], [1, 0], k=20) == pytest.approx(0.5)
    # k cuts: the only relevant candidate is at rank 3 > k=2
    assert rm.average_precision_at_k([5, 6, 7], [7], k=2) == 0.0
    # more relevant than k: divide by k, not by #relevant
    assert rm.average_precision_at_k([1, 2, 9], [1, 2, 3], k=2) == pytest.approx(1.0)
    # rank 1 and 3 relevant of 3 relevant: (1 + 2/3) / 3
    assert rm.average_precision_at_k([4, 8, 5, 7], [4, 5, 6], k=20) == pytest.approx((1 + 2 / 3) / 3)
    assert rm.average_precision_at_k([1, 2], [], k=20) == 0.0


def test_map_at_k_breaks_ties_toward_the_lowest_candidate_index():
    candidates = unit([1, 0], [1, 0], [0, 1])     # 0 and 1 tie for the first query
    queries = unit([1, 0], [0, 1])
    # query 0: ranking 0, 1, 2 -> relevant 1 at rank 2 -> 1/2; query 1: relevant 2 at rank 1 -> 1
    assert rm.mean_average_precision_at_k(queries, candidates, [[1], [2]], k=20) == pytest.approx(0.75)
    # relevant candidate not in the top k=1: 0 for query 0
    assert rm.mean_average_precision_at_k(queries, candidates, [[1], [2]], k=1) == pytest.approx(0.5)


def test_ratio_margin_matches_a_hand_computation_on_3x3():
    src = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    tgt = unit([1, 0, 0], [0.6, 0.8, 0], [0, 0, 1])
    # cos = [[1, .6, 0], [0, .8, 0], [0, 0, 1]]; k=2 neighbour means:
    # rows (x): .8, .4, .5 ; columns (y): .5, .7, .5
    assert rm.knn_mean(src, tgt, 2) == pytest.approx([0.8, 0.4, 0.5])
    assert rm.knn_mean(tgt, src, 2) == pytest.approx([0.5, 0.7, 0.5])
    assert float(rm.ratio_margin(1.0, 0.8, 0.5)) == pytest.approx(1 / 0.65)
    mined = rm.mine(src, tgt, k=2)
    # scores: (2,2) 1 / ((.5 + .5) / 2) = 2; (0,0) 1 / .65; (1,1) .8 / .55 -- best first
    assert [(c.source, c.target) for c in mined] == [(2, 2), (0, 0), (1, 1)]
    assert [c.score for c in mined] == pytest.approx([2.0, 1 / 0.65, 0.8 / 0.55])
    # the pair (0, 1) would score .6 / .75 = .8: forward picks tgt 0 for src 0 instead
    assert float(rm.ratio_margin(0.6, 0.8, 0.7)) == pytest.approx(0.8)


def test_mining_is_one_to_one_best_first():
    src = unit([1, 0.1, 0], [1, 0, 0.3], [0, 0.2, 1])
    tgt = unit([1, 0, 0], [0, 0, 1])
    # src 1's forward best is tgt 0 (margin ~1.20), but tgt 0 already went to src 0 (~1.35):
    # "max" takes pairs by descending score, each sentence once; "intersect" drops it anyway
    # because tgt 0's backward best is src 0, and lists pairs in source order (mine_bitext)
    assert [(c.source, c.target) for c in rm.mine(src, tgt, k=2, mode="intersect")] == [(0, 0), (2, 1)]
    mined = rm.mine(src, tgt, k=2, mode="max")
    assert [(c.source, c.target) for c in mined] == [(2, 1), (0, 0)]
    cos = src @ tgt.T
    mean_x, mean_y = rm.knn_mean(src, tgt, 2), rm.knn_mean(tgt, src, 2)
    assert mined[1].score == pytest.approx(cos[0, 0] / ((mean_x[0] + mean_y[0]) / 2))
    assert cos[1, 0] / ((mean_x[1] + mean_y[0]) / 2) < mined[1].score
    with pytest.raises(ValueError, match="mining mode"):
        rm.mine(src, tgt, mode="union")


def test_prf_and_best_threshold_by_hand():
    cands = [rm.Candidate("a", "x", 3.0), rm.Candidate("b", "y", 2.0), rm.Candidate("c", "z", 1.0)]
    gold = {("a", "x"), ("b", "y"), ("d", "w")}
    # cut after 1: P=1 R=1/3 F=.5; after 2: P=1 R=2/3 F=.8; after 3: P=2/3 R=2/3 F=2/3 -> after 2
    assert rm.best_threshold(cands, gold) == pytest.approx(1.5)
    assert rm.prf(rm.select(cands, 1.5), gold) == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8})


def _bucc_rows(part, xx, en, gold):
    rows = [{"id": i, "text": i, "side": "xx", "part": part, "gold": gold.get(i, "")} for i in xx]
    return rows + [{"id": i, "text": i, "side": "en", "part": part, "gold": ""} for i in en]


def test_bucc_threshold_from_dev_is_applied_to_test():
    from trainables.tasks.bucc import bucc_dataset

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0].astype("float32")
    vec = {}
    # dev: two exact translations, and a non-pair d-x3 close to several en sentences (a hub):
    # margins 2.577 (x1-e1, x2-e2) and .577 / ((.433 + .192) / 2) = 1.847 (x3-e3) -> threshold 2.21
    vec.update({"d-x1": basis[0], "d-x2": basis[1], "d-x3": basis[0] + basis[1] + basis[3],
                "d-e1": basis[0], "d-e2": basis[1], "d-e3": basis[3], "d-e4": basis[4]})
    # test: one exact translation (2.577), one weak gold pair (cos .426, margin 1.93 < 2.21),
    # and the same kind of hub non-pair (1.847)
    vec.update({"t-x1": basis[5], "t-x2": basis[6] + 1.5 * basis[7] + 1.5 * basis[8],
                "t-x3": basis[5] + basis[6] + basis[10],
                "t-e1": basis[5], "t-e2": basis[6], "t-e3": basis[10], "t-e4": basis[11]})
    rows = (_bucc_rows("dev", ["d-x1", "d-x2", "d-x3"], ["d-e1", "d-e2", "d-e3", "d-e4"],
                       {"d-x1": "d-e1", "d-x2": "d-e2"})
            + _bucc_rows("test", ["t-x1", "t-x2", "t-x3"], ["t-e1", "t-e2", "t-e3", "t-e4"],
                         {"t-x1": "t-e1", "t-x2": "t-e2"}))

    def embed(texts):
        return unit(*[vec[t] for t in texts])

    result = Retrieval.evaluate_mining(bucc_dataset(rows), embed)
    assert result["n"] == 2
    assert result["precision"] == 1.0 and result["recall"] == 0.5
    assert result["f1"] == pytest.approx(2 / 3)
    # the dev-chosen threshold separates the dev non-pair from the dev translations
    dev_only = Retrieval.evaluate_mining(bucc_dataset(rows[:7]), embed)
    assert dev_only["f1"] == 1.0 and dev_only["threshold"] == pytest.approx(result["threshold"])
    c = 3 ** -0.5                                         # cos of the hub to each of its 3 en
    pair = 1 / ((1 / 4 + (1 + c) / 3) / 2)                  # x1-e1: k-NN means 1/4 and (1 + c)/3
    hub = c / ((3 * c / 4 + c / 3) / 2)                     # x3-e3: k-NN means 3c/4 and c/3
    assert result["threshold"] == pytest.approx((pair + hub) / 2, rel=1e-5)


# --- loaders ---

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_bucc_loader_reads_upstream_files_dev_sample_test_training(tmp_path):
    for stem, n in (("sample", 2), ("training", 3)):
        base = tmp_path / "bucc2018" / "de-en" / f"de-en.{stem}"
        _write(base.with_name(base.name + ".de"), "".join(f"de-{i:06d}\tSatz {stem} {i}\n" for i in range(n)))
        _write(base.with_name(base.name + ".en"), "".join(f"en-{i:06d}\tsentence {stem} {i}\n" for i in range(n)))
        _write(base.with_name(base.name + ".gold"), f"de-{0:06d}\ten-{1:06d}\n")
    task = build_task("bucc", TaskOptions(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")))
    dev = task.load("dev", "de")
    assert set(dev["part"]) == {"dev"} and len(dev) == 4
    test = task.load("test", "de").to_pandas()
    assert (test["part"] == "test").sum() == 6 and (test["part"] == "dev").sum() == 4
    row = test[(test["part"] == "test") & (test["id"] == "de-000000")].iloc[0]
    assert row["text"] == "Satz training 0" and row["gold"] == "en-000001" and row["side"] == "xx"
    with pytest.raises(TaskDataError, match=r"task bucc: test split for language 'fr' not found at .*fr-en"):
        task.load("test", "fr")


def test_missing_files_are_one_line_errors_naming_task_split_and_path(tmp_path):
    opts = TaskOptions(data_dir=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "c"))
    cases = [("tatoeba", "test", "de", "tatoeba.deu-eng.deu"), ("lareqa", "train", "en", "train-v1.1.json"),
             ("lareqa", "test", "de", "xquad-r"), ("mewslix", "test", "de", "candidate_set_entities"),
             ("mewslix", "train", "en", "wikipedia_pairs-train.jsonl")]
    for name, split, lang, fragment in cases:
        with pytest.raises(TaskDataError) as info:
            build_task(name, opts).load(split, lang)
        message = str(info.value)
        assert "\n" not in message and f"task {name}: {split} split" in message and fragment in message \
            and "nowhere" in message


def test_tatoeba_metadata_language_sets():
    task = build_task("tatoeba")
    assert len(task.info.languages) == 41 and task.info.family == "retrieval" and not task.info.trainable
    assert dict(task.info.language_sets)["xtreme"] == TASK_LANGUAGES["tatoeba"]


@pytest.mark.skipif(not (SHARED / "tatoeba").is_dir(), reason="no shared tatoeba data")
def test_tatoeba_real_data_through_the_loader(tmp_path, small_model):
    from trainables.model import build_model

    task = build_task("tatoeba", TaskOptions(data_dir=str(SHARED / "tatoeba"), cache_dir=str(tmp_path)))
    model, tokenizer = build_model(str(small_model), [])
    model.eval()
    distinct = []
    for lang in ("de", "zh", "sw"):                      # zh, sw: Tatoeba's cmn / swh files
        data = task.load("test", lang)
        assert len(data) == {"de": 1000, "zh": 1000, "sw": 390}[lang] and data[0]["source"] and data[0]["target"]
        part = data.select(range(40))
        result = Retrieval().evaluate(task, model, part, tokenizer, batch_size=20, max_length=32)
        assert 0.0 <= result["accuracy"] <= 1.0 and result["n"] == 40
        # a language against itself: every line finds itself. Lines whose sub-words repeat another
        # line's (the tiny vocabulary maps much real text to <unk>) are left out: their scores tie
        # only up to the last bit of a matrix product, which the thread count decides
        ids = [tuple(t) for t in tokenizer(list(part["source"]), truncation=True, max_length=32)["input_ids"]]
        unique = [i for i, t in enumerate(ids) if ids.count(t) == 1]
        distinct.append(len(unique))
        same = part.select(unique).map(lambda ex: {"target": ex["source"]})
        assert Retrieval().evaluate(task, model, same, tokenizer, batch_size=20, max_length=32)["accuracy"] == 1.0
    # de and sw lines are told apart (zh is nearly all <unk> to the tiny vocabulary)
    assert distinct[0] >= 30 and distinct[2] >= 30, distinct
    cls = build_task("tatoeba", TaskOptions(data_dir=str(SHARED / "tatoeba"), pooling="cls"))
    cls_acc = Retrieval().evaluate(cls, model, part, tokenizer, batch_size=20, max_length=32)
    assert 0.0 <= cls_acc["accuracy"] <= 1.0


# --- dual encoder: LAReQA / Mewsli-X ---

def _squad(paragraphs: list[dict]) -> str:
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]})


def _para(lang: str, i: int) -> dict:
    """Three sentences in the tiny model's toy vocabulary; the question is about the second."""
    context = f"{lang} the red dog {i} . {lang} Anna {i} sees the cat . {lang} the house {i} is big ."
    return {"context": context, "qas": [{"id": f"q{i}", "question": f"{lang} Anna {i} sees what ?",
                                         "answers": [{"text": f"Anna {i}", "answer_start": context.index("Anna")}]}]}


@pytest.fixture()
def lareqa_dir(tmp_path) -> Path:
    root = tmp_path / "lareqa"
    _write(root / "train-v1.1.json", _squad([_para("en", i) for i in range(12)]))
    _write(root / "dev-v1.1.json", _squad([_para("en", i) for i in range(3)]))
    for lang in TASK_LANGUAGES["lareqa"]:
        _write(root / "xquad-r" / f"{lang}.json", _squad([_para(lang, i) for i in range(2)]))
    return root


def test_lareqa_pool_spans_all_languages(lareqa_dir, tmp_path):
    task = build_task("lareqa", TaskOptions(data_dir=str(lareqa_dir), cache_dir=str(tmp_path / "c")))
    train = task.load("train", "en")
    # a candidate is its sentence followed by the whole paragraph (XTREME's processors/lareqa.py)
    context0 = _para("en", 0)["context"]
    assert len(train) == 12 and train[0] == {"query": "en Anna 0 sees what ?",
                                             "candidate": "en Anna 0 sees the cat ." + context0}
    queries, candidates, relevant = split_pool(task.load("test", "de"))
    assert queries == ["de Anna 0 sees what ?", "de Anna 1 sees what ?"]
    assert len(candidates) == 11 * 2 * 3                            # 11 languages x 2 paragraphs x 3 sentences
    assert len(relevant[0]) == 11 and all(candidates[i].split()[1:3] == ["Anna", "0"] for i in relevant[0])
    assert {candidates[i].split()[0] for i in relevant[0]} == set(TASK_LANGUAGES["lareqa"])
    q, c, r = split_pool(task.load("dev", "en"))
    assert len(q) == 3 and len(c) == 9 and [c[x[0]] for x in r] == [
        f"en Anna {i} sees the cat ." + _para("en", i)["context"] for i in range(3)]


def test_dual_encoder_loss_decreases_and_evaluates(lareqa_dir, tmp_path, small_model):
    from trainables.model import build_model

    torch.manual_seed(0)
    task = build_task("lareqa", TaskOptions(data_dir=str(lareqa_dir), cache_dir=str(tmp_path / "c")))
    family = DualEncoder()
    model, tokenizer = build_model(str(small_model), [task])
    features = family.featurize(task, task.load("train", "en"), tokenizer, 32)
    batch = family.collator(tokenizer)([features[i] for i in range(8)])
    assert batch["q_input_ids"].shape[0] == 8 and batch["c_attention_mask"].shape[0] == 8
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss, logits = model.forward_task(task, batch)
        assert logits.shape == (8, 8)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    model.eval()
    result = family.evaluate(task, model, task.load("test", "de"), tokenizer, batch_size=16, max_length=32)
    assert 0.0 < result["map_at_20"] <= 1.0 and result["n"] == 2


def test_dual_encoder_temperature_scales_logits():
    family = DualEncoder()
    head = family.make_head(build_task("lareqa"), 48, 0.1)
    q, c = torch.eye(2), torch.eye(2)
    assert torch.allclose(head(q, c), torch.eye(2) / family.temperature)
    # loss at uniform logits is log(B)
    assert float(family.loss(torch.zeros(4, 4), {})) == pytest.approx(np.log(4))


def test_pool_dataset_round_trip_and_check():
    data = pool_dataset(["q1", "q2"], ["a", "b", "c"], [[2], [0, 1]])
    assert split_pool(data) == (["q1", "q2"], ["a", "b", "c"], [[2], [0, 1]])
    with pytest.raises(ValueError, match="2 queries but 1"):
        pool_dataset(["q1", "q2"], ["a"], [[0]])


def test_mewslix_loader_flat_and_nested_rows(tmp_path):
    root = tmp_path / "mewsli"
    cands = [{"entity_id": "Q1", "description": "Paris is the capital of France."},
             {"entity_id": "Q2", "description": "Berlin ist die Hauptstadt."}]
    _write(root / "candidate_set_entities.jsonl", "\n".join(json.dumps(c) for c in cands) + "\n")
    mentions = [{"language": "de", "mention": "Paris", "context": "Er fuhr nach Paris.", "entity_id": "Q1"},
                {"contextual_mention": {"mention": {"mention_span": {"text": "Berlin"}},
                                        "context": {"text": "In Berlin regnet es.", "language": "de"}},
                 "entity_id": "Q2"},
                {"language": "es", "mention": "Paris", "context": "Fue a Paris.", "entity_id": "Q1"}]
    _write(root / "wikinews_mentions-test.jsonl", "\n".join(json.dumps(m) for m in mentions) + "\n")
    pairs = [{"mention": "Rome", "context": "Rome is old.", "entity_id": "Q3",
              "description": "Rome is the capital of Italy."},
             {"mention": "Oslo", "context": "Oslo is cold.", "entity": {"entity_id": "Q4",
                                                                         "description": "Oslo, Norway."}}]
    _write(root / "wikipedia_pairs-train.jsonl", "\n".join(json.dumps(p) for p in pairs) + "\n")
    task = build_task("mewslix", TaskOptions(data_dir=str(root), cache_dir=str(tmp_path / "c")))
    queries, candidates, relevant = split_pool(task.load("test", "de"))
    assert queries == ["Paris : Er fuhr nach Paris.", "Berlin : In Berlin regnet es."]
    assert candidates == [c["description"] for c in cands] and relevant == [[0], [1]]
    train = task.load("train", "en")
    assert train["candidate"] == ["Rome is the capital of Italy.", "Oslo, Norway."]
    with pytest.raises(TaskDataError, match="no mentions in language 'tr'"):
        task.load("test", "tr")


def test_lareqa_target_trial_end_to_end(lareqa_dir, tmp_path, small_model):
    from trainables.trial import run_trial

    hp = dict(learning_rate=1e-3, batch_size=4, eval_batch_size=16, epochs=1, max_length=32, warmup_ratio=0.1,
              weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)
    result = run_trial({"trial_id": "t", "job_id": "j", "stage": "target", "model": str(small_model),
                        "tasks": ["lareqa"], "languages": ["de", "en"], "seed": 1, "hparams": hp,
                        "task_options": {"lareqa": {"data_dir": str(lareqa_dir)}}, "num_threads": 1,
                        "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")})
    m = result["metrics"]
    assert m["lareqa/n/de"] == 2 and m["lareqa/n/en"] == 2
    assert all(0.0 < m[f"lareqa/map_at_20/{lang}"] <= 1.0 for lang in ("de", "en")), m
    assert 0.0 < m["dev/score"] <= 1.0
