"""The built-in tiny model: builds, loads with the Auto classes, caches, and tokenizes like XLM-R."""
from __future__ import annotations

import json
import logging
import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from trainables import tiny_model
from trainables.tiny_model import SPECIAL_TOKENS, TinyModelSettings, ensure_tiny_model, mask_tokens
from trainables.toy import write_toy_xtreme

SMALL_DATA = {"n_train": 30, "n_dev": 10, "n_test": 10, "n_corpus": 300}
# a few steps of a very small model: enough to exercise every build stage quickly
SMALL = TinyModelSettings(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, max_position=64, pretrain_steps=6, batch_size=8,
                          learning_rate=1e-3, seq_len=32, seed=0)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_toy_xtreme(tmp_path_factory.mktemp("toy") / "data", **SMALL_DATA)


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_root) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    return cache, ensure_tiny_model(cache, data_root, SMALL)


def test_build_loads_with_auto_classes(built):
    from transformers import AutoModel, AutoTokenizer, XLMRobertaModel

    cache, path = built
    assert path.parent == cache and path.name.startswith("tiny-xlmr-")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    assert isinstance(model, XLMRobertaModel)
    assert tok.is_fast
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.bos_token, tok.pad_token, tok.eos_token, tok.unk_token, tok.mask_token) == SPECIAL_TOKENS
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id == 1
    assert model.config.hidden_size == SMALL.hidden_size
    assert model.config.num_hidden_layers == SMALL.num_hidden_layers
    info = json.loads((path / "tiny_model.json").read_text())
    assert info["settings"]["hidden_size"] == SMALL.hidden_size
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_sentence_pairs_and_max_length(built):
    from transformers import AutoModel, AutoTokenizer

    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    enc = tok(["the dog sees the ball.", "Maria eats 3 apples."], ["pun hasa kuhu.", "Maria dev."],
              padding=True, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    # XLM-R pair template: <s> A </s> </s> B </s>
    assert ids[0] == 0 and ids.count(2) == 3
    first_eos = ids.index(2)
    assert ids[first_eos + 1] == 2
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    assert out.shape == (2, enc["input_ids"].shape[1], SMALL.hidden_size)
    assert torch.isfinite(out).all()
    long = tok(" ".join(["dog"] * 500), truncation=True, return_tensors="pt")
    assert long["input_ids"].shape[1] <= SMALL.max_position
    with torch.no_grad():
        model(**long)


def test_split_into_words_and_word_ids(built):
    from transformers import AutoTokenizer

    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    from trainables.toy.lexicon import LEXICON

    own = next(LEXICON.form("xs", c) for c in ("see", "dog", "cat", "book")
               if LEXICON.form("xs", c) != c)  # an xs word of its own (not a loanword)
    words = ["the", "dog", "doesn't", "see", "Paris", own, "."]
    enc = tok(words, is_split_into_words=True)
    word_ids = enc.word_ids()
    assert word_ids[0] is None and word_ids[-1] is None
    inner = [w for w in word_ids if w is not None]
    assert sorted(set(inner)) == list(range(len(words)))
    assert inner == sorted(inner)
    first_pieces = [enc.tokens()[i] for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
    assert all(p != "▁" for p in first_pieces), "a word's first piece must not be a bare '▁'"
    pair = tok(words, ["pun", "hasa", "."], is_split_into_words=True)
    assert pair.sequence_ids().count(1) >= 3


def test_cache_hit_returns_same_path_quickly(built, data_root, monkeypatch):
    cache, path = built

    def no_build(*args, **kwargs):
        raise AssertionError("a cached model must not be rebuilt")

    monkeypatch.setattr(tiny_model, "_build", no_build)
    start = time.monotonic()
    assert ensure_tiny_model(cache, data_root, SMALL) == path
    assert time.monotonic() - start < 2.0


def test_cache_key_depends_on_settings_and_data(data_root):
    manifest = json.loads((data_root / "manifest.json").read_text())
    key = tiny_model.cache_key(SMALL, manifest)
    assert key == tiny_model.cache_key(TinyModelSettings(**vars(SMALL)), json.loads(json.dumps(manifest)))
    assert key != tiny_model.cache_key(TinyModelSettings(**{**vars(SMALL), "seed": 1}), manifest)
    assert key != tiny_model.cache_key(TinyModelSettings(**{**vars(SMALL), "pretrain_steps": 7}), manifest)
    changed = json.loads(json.dumps(manifest))
    changed["sha256"]["corpus/mixed.txt"] = "0" * 64  # same arguments, different corpus contents
    assert key != tiny_model.cache_key(SMALL, changed)


def test_generates_missing_data_and_logs_mlm_loss(tmp_path, monkeypatch, caplog):
    import trainables.toy.world as world

    calls = []
    real = world.write_toy_xtreme

    def small_write(root, **kwargs):
        calls.append(root)
        return real(root, **SMALL_DATA)

    monkeypatch.setattr(world, "write_toy_xtreme", small_write)
    settings = TinyModelSettings(**{**vars(SMALL), "pretrain_steps": 4})
    with caplog.at_level(logging.INFO, logger="trainables.tiny_model"):
        path = ensure_tiny_model(tmp_path / "cache", tmp_path / "data", settings)
    assert calls == [tmp_path / "data"]
    assert (tmp_path / "data" / "manifest.json").is_file()
    assert (path / "config.json").is_file()
    losses = [r.getMessage() for r in caplog.records if "pretraining: step" in r.getMessage()]
    assert len(losses) >= 2 and all("contrastive loss" in line for line in losses)


def test_older_generator_data_is_regenerated_with_its_arguments(tmp_path):
    """A toy build from an older generator (another lexicon) is rebuilt, same sizes, before the
    model trains on it: a stale cache_dir must not give a model of a different world."""
    from trainables.toy.world import GENERATOR_VERSION, read_manifest

    data = write_toy_xtreme(tmp_path / "data", **SMALL_DATA)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["arguments"]["generator_version"] = GENERATOR_VERSION - 1
    (data / "manifest.json").write_text(json.dumps(manifest))
    settings = TinyModelSettings(**{**vars(SMALL), "pretrain_steps": 2})
    ensure_tiny_model(tmp_path / "cache", data, settings)
    rebuilt = read_manifest(data)["arguments"]
    assert rebuilt["generator_version"] == GENERATOR_VERSION
    assert {k: rebuilt[k] for k in SMALL_DATA} == SMALL_DATA


def _race(args):
    cache, data = args
    settings = TinyModelSettings(**{**vars(SMALL), "pretrain_steps": 2, "seed": 7})
    return str(ensure_tiny_model(Path(cache), Path(data), settings))


def test_concurrent_builders_agree(tmp_path, data_root):
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.map(_race, [(str(cache), str(data_root))] * 2)
    assert paths[0] == paths[1]
    from transformers import AutoModel

    AutoModel.from_pretrained(paths[0])
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [Path(paths[0]).name]


def test_mask_tokens_follows_bert_recipe():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 500, (64, 64))
    ids[:, 0], ids[:, -1], ids[:, -5:-1] = 0, 2, 1  # <s>, </s>, padding
    inputs, labels = mask_tokens(ids, mask_id=4, vocab_size=500, n_special=5, generator=gen)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -5:].any(), "special tokens are never predicted"
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.float().mean().item()
    assert 0.10 < rate < 0.17
    masked = (inputs == 4) & chosen
    assert 0.7 < masked.sum().item() / chosen.sum().item() < 0.9
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_contrastive_loss_learns_to_rank_each_translation_first(built, data_root):
    """The cross-lingual contrast's gold pairs are the diagonal: a few optimizer steps on it alone
    lower the loss and make every sentence's pooled state nearest its own translation's."""
    from transformers import AutoTokenizer, XLMRobertaForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(built[1])
    lines = (data_root / "corpus" / "parallel.tsv").read_text(encoding="utf-8").splitlines()[:16]
    pairs = tiny_model._translation_pairs(tokenizer, [("parallel.tsv", line) for line in lines], SMALL)
    assert len(pairs) == 16 and all(a != b for a, b in pairs)
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(tiny_model.model_config(SMALL, len(tokenizer)))
    model.eval()  # no dropout: the loss moves only by the updates
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss = lambda: tiny_model.contrastive_loss(model, pairs, pad_id=tokenizer.pad_token_id, layer=1,
                                               temperature=0.05, pooling="cls")
    def ranked_first() -> int:
        """How many sentences' nearest translation (cosine of the [CLS] states) is their own."""
        with torch.no_grad():
            sides = []
            for rows in ([a for a, _ in pairs], [b for _, b in pairs]):
                batch = tiny_model._padded(rows, tokenizer.pad_token_id)
                mask = (batch != tokenizer.pad_token_id).long()
                hidden = model.roberta(input_ids=batch, attention_mask=mask).last_hidden_state
                sides.append(torch.nn.functional.normalize(hidden[:, 0], dim=-1))
        return int(((sides[0] @ sides[1].T).argmax(dim=1) == torch.arange(len(pairs))).sum())

    before, first_before = loss().item(), ranked_first()
    for _ in range(80):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.2 * before
    # short toy sentences can repeat in 16 pairs, so not all 16 can be told apart
    assert ranked_first() >= max(12, first_before + 6), first_before


def test_invalid_settings_rejected():
    with pytest.raises(ValueError):
        TinyModelSettings(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError):
        TinyModelSettings(seq_len=256, max_position=128)
    with pytest.raises(ValueError):
        TinyModelSettings(contrast_pooling="max")
    with pytest.raises(ValueError):
        TinyModelSettings(contrast_batch=1)
