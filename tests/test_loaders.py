"""Loaders against the Hub: ids, configs, splits and fields as the current dataset cards have them.

Nothing here can download: ``datasets.load_dataset`` is replaced by a recorder that returns a
small dataset with the card's features, so each test checks what the loader asks the Hub for and
how it reads the answer. Languages without a hub config must fail with one line naming them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pytest

from trainables.tasks import build_task
from trainables.tasks.base import TaskDataError, TaskOptions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]


@pytest.fixture
def hub(monkeypatch):
    """Record load_dataset calls; answer with ``answers[path]`` (a function of the call)."""
    calls: list[dict] = []
    answers: dict = {}

    def fake(path, name=None, split=None, **kwargs):
        calls.append({"path": path, "name": name, "split": split, **kwargs})
        return answers[path](name, split, kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return calls, answers


def task(name, tmp_path, **options):
    return build_task(name, TaskOptions(cache_dir=str(tmp_path / "cache"), **options))


def test_udpos_afrikaans_uses_the_parquet_config_name(hub, tmp_path):
    calls, answers = hub
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "pos_tags": datasets.Sequence(datasets.ClassLabel(names=UPOS))})
    answers["google/xtreme"] = lambda name, split, kw: datasets.Dataset.from_dict(
        {"tokens": [["Ek", "sien"]], "pos_tags": [[UPOS.index("PRON"), UPOS.index("VERB")]]},
        features=features)
    data = task("udpos", tmp_path).load("dev", "af")
    assert calls == [{"path": "google/xtreme", "name": "udpos.Afrikaans", "split": "validation"}]
    assert data[0]["tokens"] == ["Ek", "sien"]
    assert [UPOS[t] for t in data[0]["tags"]] == ["PRON", "VERB"]


@pytest.mark.parametrize("language", ["lt", "pl", "ro", "uk", "wo"])
def test_udpos_languages_without_a_hub_config_are_one_line(hub, tmp_path, language):
    calls, _ = hub
    with pytest.raises(TaskDataError) as info:
        task("udpos", tmp_path).load("test", language)
    message = str(info.value)
    assert "\n" not in message and repr(language) in message
    assert "tasks.udpos.data_dir" in message and f"{language}_<treebank>-ud-" in message
    assert calls == []  # refused before asking the hub


def test_udpos_missing_language_names_it_and_the_pattern_from_data_dir(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    root = tmp_path / "ud"
    root.mkdir()
    shutil.copy(SHARED / "ud" / "de_gsd-ud-test.conllu", root)
    t = task("udpos", tmp_path, data_dir=str(root))
    assert len(t.load("test", "de")) > 100  # the real German GSD test set parses
    with pytest.raises(TaskDataError, match=r"test split for language 'fr' not found at .*fr_\*-ud-test\.conllu"):
        t.load("test", "fr")


def _tatoeba_answer(name, split, kw):
    return datasets.Dataset.from_dict({"source_sentence": ["Hallo."], "target_sentence": ["Hello."],
                                       "source_lang": ["deu"], "target_lang": ["eng"]})


def test_tatoeba_hub_config_and_fields(hub, tmp_path):
    calls, answers = hub
    answers["google/xtreme"] = _tatoeba_answer
    data = task("tatoeba", tmp_path).load("test", "de")
    assert calls == [{"path": "google/xtreme", "name": "tatoeba.deu", "split": "validation"}]
    assert data[0] == {"source": "Hallo.", "target": "Hello."}


@pytest.mark.parametrize("language,code", [("az", "aze"), ("lt", "lit"), ("pl", "pol"),
                                           ("ro", "ron"), ("uk", "ukr")])
def test_tatoeba_xtreme_r_additions_need_data_dir(hub, tmp_path, language, code):
    calls, _ = hub
    with pytest.raises(TaskDataError) as info:
        task("tatoeba", tmp_path).load("test", language)
    message = str(info.value)
    assert "\n" not in message and repr(language) in message and "tasks.tatoeba.data_dir" in message
    assert f"tatoeba.{code}-eng.{code}" in message
    assert calls == []


def test_tatoeba_azerbaijani_from_laser_files(tmp_path):
    if not (SHARED / "tatoeba" / "tatoeba.aze-eng.aze").is_file():
        pytest.skip("../shared/data/tatoeba not present")
    data = task("tatoeba", tmp_path, data_dir=str(SHARED / "tatoeba")).load("test", "az")
    assert len(data) == 1000 and data.column_names == ["source", "target"]


def _squad_answer(name, split, kw):
    return datasets.Dataset.from_dict({
        "id": ["q1"], "context": ["Bucharest is the capital."], "question": ["Capital?"],
        "answers": [{"text": ["Bucharest"], "answer_start": [0]}]})


def test_xquad_romanian_comes_from_google_xquad(hub, tmp_path):
    calls, answers = hub
    answers["google/xquad"] = answers["google/xtreme"] = _squad_answer
    t = task("xquad", tmp_path)
    ro = t.load("test", "ro")
    de = t.load("test", "de")
    assert calls == [{"path": "google/xquad", "name": "xquad.ro", "split": "validation"},
                     {"path": "google/xtreme", "name": "XQuAD.de", "split": "validation"}]
    assert ro[0]["answers"]["text"] == ["Bucharest"] and len(de) == 1


def test_xcopa_social_iqa_is_read_from_the_parquet_conversion(hub, tmp_path):
    calls, answers = hub
    answers["allenai/social_i_qa"] = lambda name, split, kw: datasets.Dataset.from_dict({
        "context": ["Tracy gave Kai a gift."], "question": ["Why?"], "answerA": ["to be kind"],
        "answerB": ["to leave"], "answerC": ["to sleep"], "label": ["1"]})
    data = task("xcopa", tmp_path).load("train", "en")
    assert calls == [{"path": "allenai/social_i_qa", "name": None, "split": "train",
                      "revision": "refs/convert/parquet",
                      "data_files": {"train": "default/train/*.parquet"}}]
    assert len(data) == 1 and data[0]["label"] == 0


def test_cosmos_qa_is_read_from_the_parquet_conversion(hub, tmp_path):
    """allenai/cosmos_qa is script-based on main (cosmos_qa.py), which datasets >= 4 cannot run."""
    calls, answers = hub
    answers["allenai/cosmos_qa"] = lambda name, split, kw: datasets.Dataset.from_dict({
        "id": ["a"], "context": ["Kai missed the bus."], "question": ["Why was Kai late?"],
        "answer0": ["the bus left"], "answer1": ["rain"], "answer2": ["none"], "answer3": ["sleep"],
        "label": [0]})
    data = task("cosmosqa", tmp_path).load("dev", "en")
    assert calls == [{"path": "allenai/cosmos_qa", "name": None, "split": "validation",
                      "revision": "refs/convert/parquet",
                      "data_files": {"validation": "default/validation/*.parquet"}}]
    assert len(data) == 1 and data[0]["label"] == 0


def test_xcopa_copa_from_super_glue_main(hub, tmp_path):
    calls, answers = hub
    answers["aps/super_glue"] = lambda name, split, kw: datasets.Dataset.from_dict({
        "premise": ["The man fell."], "choice1": ["He slipped."], "choice2": ["He sang."],
        "question": ["cause"], "idx": [0], "label": [0]})
    data = task("xcopa", tmp_path, english_train="copa").load("dev", "en")
    assert calls == [{"path": "aps/super_glue", "name": "copa", "split": "validation"}]
    assert len(data) == 1


def test_xcopa_languages_from_cambridgeltl(hub, tmp_path):
    calls, answers = hub
    answers["cambridgeltl/xcopa"] = lambda name, split, kw: datasets.Dataset.from_dict({
        "premise": ["x"], "choice1": ["a"], "choice2": ["b"], "question": ["effect"], "idx": [1],
        "label": [1], "changed": [False]})
    task("xcopa", tmp_path).load("test", "et")
    assert calls == [{"path": "cambridgeltl/xcopa", "name": "et", "split": "test"}]
