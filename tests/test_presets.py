"""Model presets and the ZeRO memory arithmetic, checked against hand-computed values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainables.presets import (GB, PRESETS, MemoryEstimate, activation_bytes, estimate_for, estimate_memory, fits,
                                preset_for)


def test_base_parameter_count_by_hand() -> None:
    h, i, v, p = 768, 3072, 250002, 514
    embeddings = v * h + p * h + 1 * h + 2 * h          # word, position, token type, LayerNorm
    layer = (3 * (h * h + h) + (h * h + h) + 2 * h) + (h * i + i + i * h + h + 2 * h)
    pooler = h * h + h
    assert PRESETS["xlm-roberta-base"].params == embeddings + 12 * layer + pooler == 278_043_648


@pytest.mark.parametrize("name, billions", [("xlm-roberta-base", 0.278), ("xlm-roberta-large", 0.560),
                                            ("facebook/xlm-roberta-xl", 3.48), ("facebook/xlm-roberta-xxl", 10.7)])
def test_published_sizes(name: str, billions: float) -> None:
    assert PRESETS[name].params / 1e9 == pytest.approx(billions, rel=0.005)


def test_large_matches_transformers() -> None:
    """The shape formula agrees with an instantiated (meta-device) XLM-R large."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    preset = PRESETS["xlm-roberta-large"]
    config = XLMRobertaConfig(vocab_size=preset.vocab, hidden_size=preset.hidden, num_hidden_layers=preset.layers,
                              num_attention_heads=preset.heads, intermediate_size=preset.intermediate,
                              max_position_embeddings=preset.max_positions, type_vocab_size=1)
    with torch.device("meta"):
        model = XLMRobertaModel(config)
    assert sum(p.numel() for p in model.parameters()) == preset.params


def test_preset_for_local_dir_and_unknown(tmp_path: Path) -> None:
    assert preset_for("xlm-roberta-large") is PRESETS["xlm-roberta-large"]
    assert preset_for("someone/unknown-model") is None
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
        "vocab_size": 100, "max_position_embeddings": 40, "type_vocab_size": 1}))
    p = preset_for(str(tmp_path))
    h, i = 32, 64
    assert p.params == (100 + 40 + 1) * h + 2 * h + 2 * (4 * (h * h + h) + 2 * h + 2 * h * i + i + h + 2 * h) + h * h + h
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(ValueError, match="config.json: not an encoder config"):
        preset_for(str(tmp_path))


def test_xl_unsharded_model_states() -> None:
    """XL, bf16 Adam, one GPU, no ZeRO: 16 bytes per parameter, about 56 GB before activations."""
    n = PRESETS["facebook/xlm-roberta-xl"].params
    est = estimate_memory(n, precision="bf16", stage=0, micro_batch=1, seq_len=8, hidden=2560, layers=36)
    assert (est.weights, est.grads, est.optimizer_states) == (2 * n, 2 * n, 12 * n)
    assert (est.weights + est.grads + est.optimizer_states) / GB == pytest.approx(55.68, abs=0.01)
    assert est.cpu_bytes == 0


def test_zero_stages_partition() -> None:
    n, g = 1_000_000_000, 8
    kw = dict(precision="bf16", num_gpus=g, micro_batch=1, seq_len=8, hidden=64, layers=1)
    s1, s2, s3 = (estimate_memory(n, stage=s, **kw) for s in (1, 2, 3))
    assert (s1.weights, s1.grads, s1.optimizer_states) == (2e9, 2e9, 12e9 / 8)
    assert (s2.weights, s2.grads, s2.optimizer_states) == (2e9, 2e9 / 8, 12e9 / 8)
    assert (s3.weights, s3.grads, s3.optimizer_states) == (2e9 / 8, 2e9 / 8, 12e9 / 8)
    off = estimate_memory(n, stage=3, offload_optimizer="cpu", offload_param="cpu", **kw)
    assert (off.weights, off.optimizer_states, off.grads) == (0, 0, 2e9 / 8)
    assert off.cpu_bytes == 12e9 + 2e9
    fp32 = estimate_memory(n, precision="fp32", stage=0, micro_batch=1, seq_len=8, hidden=64, layers=1)
    assert (fp32.weights, fp32.grads, fp32.optimizer_states) == (4e9, 4e9, 8e9)


def test_activations_korthikanti() -> None:
    # large, micro-batch 8, seq 256: per layer 256*8*1024*(34 + 5*16*256/1024) = 2_097_152 * 54 bytes
    per_layer = 256 * 8 * 1024 * (34 + 5 * 16 * 256 / 1024)
    assert per_layer == 113_246_208
    full = activation_bytes(micro_batch=8, seq_len=256, hidden=1024, layers=24, heads=16, precision="bf16",
                            gradient_checkpointing=False)
    assert full == 24 * per_layer
    ckpt = activation_bytes(micro_batch=8, seq_len=256, hidden=1024, layers=24, heads=16, precision="bf16",
                            gradient_checkpointing=True)
    assert ckpt == 24 * 2 * 256 * 8 * 1024 + per_layer
    assert activation_bytes(micro_batch=8, seq_len=256, hidden=1024, layers=24, heads=16, precision="fp32",
                            gradient_checkpointing=False) == 2 * full


def test_fits_on_an_80gb_gpu() -> None:
    h100 = 80 * GB
    xl = PRESETS["facebook/xlm-roberta-xl"]
    small = estimate_for(xl, precision="bf16", stage=0, micro_batch=8, seq_len=256)
    assert small.total / GB == pytest.approx(55.68 + 36 * 8 * 256 * 2560 * 50 / 1e9, abs=0.01)  # 65.1 GB
    assert fits(small, h100)
    plain = estimate_for(xl, precision="bf16", stage=0, micro_batch=32, seq_len=256)
    assert plain.total / GB == pytest.approx(55.68 + 37.75, abs=0.01)
    assert not fits(plain, h100)
    offloaded = estimate_for(xl, precision="bf16", stage=3, offload_optimizer="cpu", offload_param="cpu",
                             micro_batch=8, seq_len=256, gradient_checkpointing=True)
    assert fits(offloaded, h100)
    xxl = estimate_for(PRESETS["facebook/xlm-roberta-xxl"], precision="bf16", stage=2, micro_batch=1, seq_len=128)
    assert not fits(xxl, h100)           # 10.7B x 4 bytes of weights+grads alone
    assert fits(MemoryEstimate(40 * GB, 0, 0, 0, 0), 80 * GB, reserve_fraction=0.5)
    assert not fits(MemoryEstimate(40 * GB, 0, 0, 1, 0), 80 * GB, reserve_fraction=0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "int8"}, "precision: must be one of"),
    ({"stage": 5}, "stage: must be one of"),
    ({"stage": 2, "offload_param": "cpu"}, "offload_param: parameter offload needs stage 3"),
    ({"num_gpus": 0}, "num_gpus: must be >= 1"),
])
def test_estimate_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        estimate_memory(1000, **kwargs)


def test_preset_for_a_hub_id_in_the_local_cache(tmp_path: Path, monkeypatch) -> None:
    """Any hub encoder whose config.json is in the Hugging Face cache is estimated; nothing is downloaded."""
    import huggingface_hub.constants

    repo = tmp_path / "models--someone--cached-encoder"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps({
        "num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
        "vocab_size": 500}))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    p = preset_for("someone/cached-encoder")
    assert (p.name, p.layers, p.hidden, p.heads, p.intermediate, p.vocab, p.max_positions) == \
        ("someone/cached-encoder", 3, 64, 4, 128, 500, 514)
    assert preset_for("someone/not-cached") is None
    assert preset_for("not a valid repo id!") is None
