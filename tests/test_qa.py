"""Extractive QA: official-equivalent metrics, windowing, span selection, the QA tasks, trials."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from trainables.families.qa import (QuestionAnswering, Window, best_answer, encode_windows,
                                    window_settings)
from trainables.metrics.qa import (SQUAD_V2, mixed_segmentation, mlqa_tokens, qa_scores, score_one,
                                   squad_tokens)
from trainables.tasks import build_task, task_info
from trainables.tasks.base import TaskDataError, TaskOptions
from trainables.tasks.squad_format import marked_language
from trainables.trial import run_trial

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HP = dict(learning_rate=3e-3, batch_size=16, eval_batch_size=32, epochs=2, max_length=64,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


# --- metrics -------------------------------------------------------------------------------

def test_squad_normalisation_drops_case_punctuation_articles_and_spaces():
    assert squad_tokens("  The  Cat, (a) dog!") == ["cat", "dog"]
    assert score_one("the Eiffel tower.", ["Eiffel Tower"]) == (1.0, 1.0)
    assert score_one("an apple", ["the apples"]) == (0.0, 0.0)


def test_f1_is_token_overlap_and_max_over_gold_answers():
    # pred {quick, brown, fox} vs gold {quick, fox, jumps}: 2 common, P = R = 2/3
    em, f1 = score_one("the quick brown fox", ["quick fox jumps"])
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    em, f1 = score_one("the quick brown fox", ["quick fox jumps", "brown fox"])
    assert em == 0.0 and f1 == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))   # P 2/3, R 1 -> 0.8
    em, f1 = score_one("fox fox", ["fox"])          # counts are clipped: 1 common of 2 predicted
    assert f1 == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_empty_predictions_and_unanswerable_questions():
    assert score_one("", ["Paris"]) == (0.0, 0.0)
    assert score_one("", ["Paris"], rules=SQUAD_V2) == (0.0, 0.0)
    assert score_one("", [], rules=SQUAD_V2) == (1.0, 1.0)        # unanswerable, no answer: right
    assert score_one("Paris", [], rules=SQUAD_V2) == (0.0, 0.0)   # unanswerable but answered
    with pytest.raises(ValueError, match="v2.0"):
        score_one("Paris", [])                    # v1.1 has no unanswerable questions


def test_qa_scores_average_and_report_em_f1():
    scores = qa_scores(["Paris", "quick brown fox", ""], [["paris"], ["quick fox jumps"], []],
                       rules=SQUAD_V2)
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert scores["em_f1"] == pytest.approx((scores["exact_match"] + scores["f1"]) / 2)
    assert scores["n"] == 3
    with pytest.raises(ValueError):
        qa_scores(["a"], [["a"], ["b"]])


def test_mlqa_normalisation_unicode_punctuation_and_articles_per_language():
    # « » and the Spanish ¿ are Unicode punctuation, not ASCII: only MLQA's normaliser drops them
    assert mlqa_tokens("«Berlin»", "de") == ["berlin"] and squad_tokens("«Berlin»") == ["«berlin»"]
    assert mlqa_tokens("¿El gato?", "es") == ["gato"]
    assert mlqa_tokens("unos las gatos", "es") == ["gatos"]
    assert mlqa_tokens("Der Hund des Mannes", "de") == ["hund", "mannes"]
    assert mlqa_tokens("Die Katze", "en") == ["die", "katze"]           # German articles are English words
    assert mlqa_tokens("the dog", "de") == ["the", "dog"]
    assert mlqa_tokens("những con mèo", "vi") == ["con", "mèo"]
    assert mlqa_tokens("الكتاب", "ar") == ["كتاب"]
    assert mlqa_tokens("एक किताब", "hi") == ["एक", "किताब"]
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        mlqa_tokens("x", "xx")


def test_mlqa_chinese_mixed_segmentation():
    assert mixed_segmentation("abc北京 def") == ["abc", "北", "京", "def"]
    assert mlqa_tokens("在2008年北京。", "zh") == ["在", "2008", "年", "北", "京"]
    norm = lambda t: mlqa_tokens(t, "zh")  # noqa: E731
    em, f1 = score_one("北京大学", ["北京"], norm)    # 2 common of 4 predicted / 2 gold
    assert em == 0.0 and f1 == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert score_one("北京大学", ["北京大学"], norm) == (1.0, 1.0)
    assert score_one("北京大学", ["北京大学"])[1] == 1.0 and score_one("北京大学", ["北京"])[1] == 0.0


# --- windows and span selection ---------------------------------------------------------------

def test_window_settings_scale_with_length():
    assert window_settings(384) == (128, 64)
    assert window_settings(512) == (128, 64)
    assert window_settings(96) == (32, 48)
    assert window_settings(96, doc_stride=10) == (10, 48)


def _long_example() -> tuple[dict, str, int]:
    rng = random.Random(0)
    words = [rng.choice(["alpha", "beta", "gamma", "delta", "river", "stone"]) for _ in range(120)]
    answer = "Zanzibar Kilimanjaro"
    prefix = " ".join(words[:70]) + " "
    context = prefix + answer + " " + " ".join(words[70:])
    row = {"question": ["Where is the mountain?"], "context": [context],
           "answers": [{"text": [answer], "answer_start": [len(prefix)]}], "__row": [0]}
    return row, answer, len(prefix)


def test_long_context_gives_overlapping_windows_with_answer_positions(small_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    batch, answer, start_char = _long_example()
    # windows start 8 sub-words apart (doc_stride is the step), so consecutive windows share most
    # of their context and one of them holds the whole answer
    # 64: room for the question and the whole answer (21 sub-words with the tiny tokenizer)
    train = encode_windows(tokenizer, batch, 64, 8, 24, for_eval=False)
    evalf = encode_windows(tokenizer, batch, 64, 8, 24, for_eval=True)
    n = len(train["input_ids"])
    assert n >= 4 and len(evalf["input_ids"]) == n and set(evalf["example_row"]) == {0}
    assert all(len(ids) <= 64 for ids in train["input_ids"])
    context = batch["context"][0]
    containing = 0
    spans = []
    for f in range(n):
        offsets = list(zip(evalf["char_start"][f], evalf["char_end"][f]))
        inside = [o for o in offsets if o[0] >= 0]
        spans.append((inside[0][0], inside[-1][1]))
        s, e = train["start_positions"][f], train["end_positions"][f]
        if inside[0][0] <= start_char and inside[-1][1] >= start_char + len(answer):
            containing += 1
            assert 0 < s <= e
            assert context[offsets[s][0]:offsets[e][1]] == answer
        else:
            assert (s, e) == (0, 0)
    assert containing >= 1
    # consecutive windows overlap (document stride), and together they cover the context
    assert all(spans[i + 1][0] < spans[i][1] for i in range(n - 1))
    assert spans[0][0] == 0 and spans[-1][1] == len(context.rstrip())


def test_unanswerable_rows_point_at_cls(small_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    batch = {"question": ["Who?"], "context": ["nobody is here"], "__row": [0],
             "answers": [{"text": [], "answer_start": []}]}
    out = encode_windows(tokenizer, batch, 48, 16, 24, for_eval=False)
    assert out["start_positions"] == [0] and out["end_positions"] == [0]


def _window(start: dict[int, float], end: dict[int, float], offsets) -> Window:
    s, e = np.zeros(len(offsets)), np.zeros(len(offsets))
    for i, v in start.items():
        s[i] = v
    for i, v in end.items():
        e[i] = v
    return Window(s, e, offsets)


# <s> q q </s> </s> then context tokens over "hello big world again" then </s>
CONTEXT = "hello big world again"
OFFSETS = [(-1, -1)] * 5 + [(0, 5), (6, 9), (10, 15), (16, 21)] + [(-1, -1)]


def test_best_answer_picks_highest_valid_span():
    assert best_answer([_window({6: 5.0}, {7: 4.0}, OFFSETS)], CONTEXT) == "big world"
    # best start and end are reversed (end before start): (7, 8) = 7 beats (5, 6) = 6
    assert best_answer([_window({7: 5.0, 5: 1.0}, {6: 5.0, 8: 2.0}, OFFSETS)], CONTEXT) == "world again"
    # question tokens and special tokens never start or end an answer
    assert best_answer([_window({1: 9.0, 5: 1.0}, {2: 9.0, 5: 1.0}, OFFSETS)], CONTEXT) == "hello"
    # span longer than max_answer_tokens is excluded
    w = _window({5: 5.0, 7: 1.0}, {8: 5.0}, OFFSETS)
    assert best_answer([w], CONTEXT) == "hello big world again"
    assert best_answer([w], CONTEXT, max_answer_tokens=2) == "world again"


def test_best_answer_over_windows_and_null_answer():
    low = _window({5: 1.0}, {5: 1.0}, OFFSETS)
    high = _window({8: 3.0}, {8: 3.0}, OFFSETS)
    assert best_answer([low, high], CONTEXT) == "again"
    null = _window({0: 10.0, 6: 2.0}, {0: 10.0, 6: 2.0}, OFFSETS)
    assert best_answer([null], CONTEXT) == "big"                      # SQuAD v1: always a span
    assert best_answer([null], CONTEXT, allow_null=True) == ""         # v2: null 20 > span 4
    assert best_answer([null], CONTEXT, allow_null=True, null_threshold=30.0) == "big"
    # the null score is the lowest over windows: a window without strong null gives the span
    weak_null = _window({0: -5.0, 7: 4.0}, {0: -5.0, 7: 4.0}, OFFSETS)
    assert best_answer([null, weak_null], CONTEXT, allow_null=True) == "world"


# --- tasks and readers ------------------------------------------------------------------------

def _squad_json(path: Path, paragraphs: list[tuple[str, list[tuple[str, str, str | None]]]],
                impossible: set[str] = frozenset()) -> Path:
    """paragraphs: (context, [(id, question, answer or None)])."""
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": ctx, "qas": [
            {"id": qid, "question": q, "is_impossible": qid in impossible,
             "answers": [] if a is None else [{"text": a, "answer_start": ctx.index(a)}]}
            for qid, q, a in qas]}
        for ctx, qas in paragraphs]}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def _options(tmp_path: Path, data_dir: Path, **kw) -> TaskOptions:
    return TaskOptions(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **kw)


def test_task_infos():
    for name in ("squad_v1", "squad_v2"):
        info = task_info(name)
        assert info.family == "qa" and info.main_metric == "f1" and not info.target and info.intermediate
    for name, n in (("xquad", 12), ("mlqa", 7), ("tydiqa", 9)):
        info = task_info(name)
        assert info.family == "qa" and len(info.languages) == n and not info.intermediate and info.target
    assert "ro" in task_info("xquad").languages


def test_squad_v2_reader_marks_impossible_questions(tmp_path):
    data_dir = tmp_path / "squad2"
    _squad_json(data_dir / "dev-v2.0.json", [("Paris is in France.", [("a", "Where is Paris?", "France"),
                                                                       ("b", "Where is Rome?", None)])],
                impossible={"b"})
    data = build_task("squad_v2", _options(tmp_path, data_dir)).load("dev", "en")
    assert data[0] == {"id": "a", "context": "Paris is in France.", "question": "Where is Paris?",
                       "answers": {"text": ["France"], "answer_start": [12]}}
    assert data[1]["answers"] == {"text": [], "answer_start": []}
    assert build_task("squad_v2").unanswerable and not build_task("squad_v1").unanswerable


def test_missing_and_malformed_files_name_task_split_and_path(tmp_path):
    task = build_task("xquad", _options(tmp_path, tmp_path))
    with pytest.raises(TaskDataError, match=r"task xquad: test split for language 'de' not found at .*xquad\.de\.json"):
        task.load("test", "de")
    with pytest.raises(TaskDataError, match=r"task xquad: .*train.*train-v1\.1\.json"):
        task.load("train", "en")
    (tmp_path / "xquad.ar.json").write_text("{not json")
    with pytest.raises(TaskDataError, match=r"task xquad test split \(ar\): .*xquad\.ar\.json"):
        task.load("test", "ar")
    (tmp_path / "xquad.el.json").write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(TaskDataError, match=r"xquad\.el\.json: missing or malformed field 'context'"):
        task.load("test", "el")
    with pytest.raises(TaskDataError, match=r"task xquad: no 'test' split for language 'fr'"):
        task.load("test", "fr")
    with pytest.raises(TaskDataError, match=r"task xquad: no 'dev' split for language 'de'"):
        task.load("dev", "de")


def test_tydiqa_filters_languages_by_id_prefix(tmp_path):
    paragraphs = [("Helsinki is big.", [("english-1", "What is big?", "Helsinki")]),
                  ("القاهرة كبيرة", [("arabic-1", "ما هي؟", "القاهرة"), ("arabic-2", "ما؟", "كبيرة")])]
    _squad_json(tmp_path / "d" / "tydiqa-goldp-v1.1-dev.json", paragraphs)
    _squad_json(tmp_path / "d" / "tydiqa-goldp-v1.1-train.json", paragraphs)
    task = build_task("tydiqa", _options(tmp_path, tmp_path / "d"))
    assert task.load("test", "ar")["id"] == ["arabic-1", "arabic-2"]
    assert task.load("train", "en")["id"] == ["english-1"]
    assert task.load("dev", "en")["id"] == ["english-1"]
    with pytest.raises(TaskDataError, match="task tydiqa: no 'train' split for language 'ar'"):
        task.load("train", "ar")


def test_mlqa_reads_upstream_layout_and_scores_with_its_language(tmp_path):
    _squad_json(tmp_path / "m" / "test" / "test-context-de-question-de.json",
                [("Der Hund bellt.", [("q1", "Wer bellt?", "Der Hund")])])
    task = build_task("mlqa", _options(tmp_path, tmp_path / "m"))
    data = task.load("test", "de")           # through the raw cache: read, saved, memory-mapped
    again = task.load("test", "de")
    assert data["id"] == ["q1"] and marked_language(data) == marked_language(again) == "de"
    norm = QuestionAnswering().normalizer(task, data, None)
    assert score_one("Hund", ["Der Hund"], norm) == (1.0, 1.0)
    assert score_one("Hund", ["Der Hund"]) == (0.0, pytest.approx(2 / 3))  # SQuAD keeps "der"
    xquad = build_task("xquad")
    assert QuestionAnswering().normalizer(xquad, data, "de") is squad_tokens


# --- trials -----------------------------------------------------------------------------------

NAMES = ["anna", "boris", "chen", "dara", "emil", "fina", "gert", "hugo", "ines", "jan", "kim", "lea"]
PLACES = ["rome", "oslo", "lima", "kyiv", "baku", "doha", "riga", "bern"]


def _synthetic_paragraphs(rng: random.Random, n: int, prefix: str) -> list:
    paragraphs = []
    for i in range(n):
        a, b = rng.sample(NAMES, 2)
        pa, pb = rng.sample(PLACES, 2)
        ctx = f"{a} lives in {pa} . {b} lives in {pb} ."
        paragraphs.append((ctx, [(f"{prefix}{i}a", f"where does {a} live ?", pa),
                                 (f"{prefix}{i}b", f"where does {b} live ?", pb)]))
    return paragraphs


def _trial_config(tmp_path: Path, model: Path, data_dir: Path, languages: list[str], **hp) -> dict:
    return {"trial_id": "qa", "job_id": "qa", "stage": "target", "model": str(model),
            "tasks": ["xquad"], "seed": 3, "hparams": {**HP, **hp}, "languages": languages,
            "task_options": {"xquad": {"data_dir": str(data_dir)}},
            "cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "out"), "num_threads": 1}


def _check_metrics(metrics: dict, languages: list[str], counts: dict[str, int]) -> None:
    for lang in languages:
        em, f1, emf1 = (metrics[f"xquad/{m}/{lang}"] for m in ("exact_match", "f1", "em_f1"))
        assert 0.0 <= em <= f1 <= 1.0
        assert emf1 == pytest.approx((em + f1) / 2)
        assert metrics[f"xquad/n/{lang}"] == counts[lang]
    assert metrics["xquad/f1/avg"] == pytest.approx(np.mean([metrics[f"xquad/f1/{l}"] for l in languages]))


def test_trained_xquad_trial_on_fixture(tmp_path, small_model):
    rng = random.Random(1)
    data_dir = tmp_path / "xq"
    _squad_json(data_dir / "train-v1.1.json", _synthetic_paragraphs(rng, 96, "t"))
    _squad_json(data_dir / "dev-v1.1.json", _synthetic_paragraphs(rng, 12, "d"))
    _squad_json(data_dir / "xquad.en.json", _synthetic_paragraphs(rng, 10, "e"))
    _squad_json(data_dir / "xquad.de.json", _synthetic_paragraphs(rng, 7, "g"))
    reports: list[dict] = []
    result = run_trial(_trial_config(tmp_path, small_model, data_dir, ["en", "de"], epochs=3),
                       report=reports.append)
    metrics = result["metrics"]
    _check_metrics(metrics, ["en", "de"], {"en": 20, "de": 14})
    epochs = [r for r in reports if "epoch" in r]
    assert len(epochs) == 3 and epochs[2]["train/loss"] < epochs[0]["train/loss"]
    # the answer is always a place name after "lives in": the model learns to find it
    assert metrics["xquad/f1/en"] > 0.3
    assert metrics["dev/score"] == pytest.approx(max(r["dev/score"] for r in epochs))


def _slice(source: Path, target: Path, max_questions: int, skip: int = 0) -> int:
    """The first ``max_questions`` questions (after ``skip``) of a SQuAD file, whole paragraphs."""
    data = json.loads(source.read_text(encoding="utf-8"))
    kept, seen, count = [], 0, 0
    for article in data["data"]:
        paragraphs = []
        for p in article["paragraphs"]:
            if seen >= skip and count < max_questions:
                qas = p["qas"][: max_questions - count]
                paragraphs.append({"context": p["context"], "qas": qas})
                count += len(qas)
            seen += len(p["qas"])
        if paragraphs:
            kept.append({"title": article.get("title", ""), "paragraphs": paragraphs})
    target.write_text(json.dumps({"version": "1.1", "data": kept}, ensure_ascii=False), encoding="utf-8")
    return count


@pytest.mark.slow
def test_real_xquad_english_training_zero_shot_to_eleven_languages(tmp_path, small_model):
    xquad = SHARED / "xquad"
    if not (xquad / "xquad.en.json").is_file():
        pytest.skip(f"real XQuAD data not found at {xquad}")
    data_dir = tmp_path / "real"
    data_dir.mkdir()
    _slice(xquad / "xquad.en.json", data_dir / "train-v1.1.json", 64, skip=200)
    _slice(xquad / "xquad.en.json", data_dir / "dev-v1.1.json", 8, skip=400)
    others = [l for l in task_info("xquad").languages if l != "en"]
    counts = {lang: _slice(xquad / f"xquad.{lang}.json", data_dir / f"xquad.{lang}.json", 8)
              for lang in others}
    result = run_trial(_trial_config(tmp_path, small_model, data_dir, others, epochs=1, max_length=96))
    assert len(others) == 11
    _check_metrics(result["metrics"], others, counts)


def test_hub_rows_are_converted_to_the_squad_schema_and_tydi_filtered(tmp_path):
    """The hub branch (no network here): a hub-shaped dataset stands in for ``hub_dataset``."""
    import datasets

    from trainables.tasks.tydiqa import TyDiQA

    hub = datasets.Dataset.from_dict({
        "id": ["english-1", "arabic-1", "swahili-1"], "title": ["a", "b", "c"],
        "context": ["Oslo is cold.", "القاهرة", "Nairobi"], "question": ["q1", "q2", "q3"],
        "answers": [{"text": ["Oslo"], "answer_start": [0]}, {"text": ["القاهرة"], "answer_start": [0]},
                    {"text": ["Nairobi"], "answer_start": [0]}]})
    calls = []

    class OfflineTyDi(TyDiQA):
        def hub_dataset(self, path, name, split, language, **kw):
            calls.append((path, name, split))
            return hub

    task = OfflineTyDi(TaskOptions(cache_dir=str(tmp_path / "cache")))
    data = task.load("test", "sw")
    assert calls == [("google/xtreme", "tydiqa", "validation")]
    assert data.column_names == ["id", "context", "question", "answers"] and data["id"] == ["swahili-1"]
    assert marked_language(data) == "sw"
    assert task.load("train", "en")["answers"] == [{"text": ["Oslo"], "answer_start": [0]}]
    assert calls[-1] == ("google/xtreme", "tydiqa", "train")

