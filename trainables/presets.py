"""XLM-R model shapes and a ZeRO memory estimate: does a trial fit the GPU before it starts?

Parameter counts are computed from the shapes (embeddings, encoder layers, pooler), which gives
the published sizes: base 278M, large 560M, XL 3.5B, XXL 10.7B.

Memory (per GPU, bytes) follows the ZeRO paper's accounting (Rajbhandari et al., 2020):

* mixed precision (bf16/fp16) Adam: 2 (16-bit weights) + 2 (16-bit grads) + 12 (fp32 master
  weights, momentum, variance) bytes per parameter; fp32: 4 + 4 + 8;
* stage 1 partitions the optimizer states over the GPUs, stage 2 also the gradients, stage 3
  also the weights; ``offload_optimizer`` moves the optimizer states to CPU memory,
  ``offload_param`` (stage 3) also the weights;
* activations per layer (Korthikanti et al., 2022, no recomputation, 16-bit):
  ``seq * batch * hidden * (34 + 5 * heads * seq / hidden)`` bytes, twice that in fp32. With
  gradient checkpointing only each layer's input is kept (``2 * seq * batch * hidden`` bytes in
  16-bit) plus one layer's full activations while it is recomputed.

Not counted: CUDA context and allocator fragmentation (leave headroom with ``reserve_fraction``),
communication buckets, embedding-layer activations and the logits of the head.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GB = 10**9


@dataclass(frozen=True)
class ModelPreset:
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int = 250002
    max_positions: int = 514
    type_vocab: int = 1
    pooler: bool = True

    @property
    def params(self) -> int:
        """Parameters from the shapes (Linear weights + biases, LayerNorm weight + bias)."""
        h, i = self.hidden, self.intermediate
        embeddings = (self.vocab + self.max_positions + self.type_vocab) * h + 2 * h
        attention = 4 * (h * h + h) + 2 * h            # q, k, v, output projection; LayerNorm
        ffn = (h * i + i) + (i * h + h) + 2 * h          # up, down; LayerNorm
        pooler = h * h + h if self.pooler else 0
        return embeddings + self.layers * (attention + ffn) + pooler


PRESETS: dict[str, ModelPreset] = {p.name: p for p in (
    ModelPreset("xlm-roberta-base", layers=12, hidden=768, heads=12, intermediate=3072),
    ModelPreset("xlm-roberta-large", layers=24, hidden=1024, heads=16, intermediate=4096),
    ModelPreset("facebook/xlm-roberta-xl", layers=36, hidden=2560, heads=32, intermediate=10240),
    ModelPreset("facebook/xlm-roberta-xxl", layers=48, hidden=4096, heads=32, intermediate=16384),
)}


def preset_for(model_id: str) -> ModelPreset | None:
    """The preset of a known hub id, else the shapes in a local directory's config.json, else
    those of a hub id's config.json in the local Hugging Face cache (no network), else None."""
    if model_id in PRESETS:
        return PRESETS[model_id]
    config_file = Path(model_id).expanduser() / "config.json"
    if not config_file.is_file():
        config_file = cached_hub_config(model_id)
        if config_file is None:
            return None
    try:
        config = json.loads(config_file.read_text())
        return ModelPreset(name=model_id, layers=config["num_hidden_layers"], hidden=config["hidden_size"],
                           heads=config["num_attention_heads"], intermediate=config["intermediate_size"],
                           vocab=config["vocab_size"], max_positions=config.get("max_position_embeddings", 514),
                           type_vocab=config.get("type_vocab_size", 1))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{config_file}: not an encoder config ({exc})") from None


def cached_hub_config(model_id: str) -> Path | None:
    """A hub model's config.json if the local Hugging Face cache has it; never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # not a valid repo id, or no huggingface_hub: no estimate, not an error
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU by kind, and bytes of host memory the offloaded states take (whole node)."""

    weights: float
    grads: float
    optimizer_states: float
    activations: float
    cpu_bytes: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer_states + self.activations

    def describe(self) -> str:
        return (f"per GPU {self.total / GB:.1f} GB (weights {self.weights / GB:.1f}, grads {self.grads / GB:.1f}, "
                f"optimizer {self.optimizer_states / GB:.1f}, activations {self.activations / GB:.1f}); "
                f"CPU {self.cpu_bytes / GB:.1f} GB")


BYTES_PER_PARAM = {  # weights, grads, optimizer states
    "fp32": (4, 4, 8),
    "bf16": (2, 2, 12),
    "fp16": (2, 2, 12),
}


def activation_bytes(*, micro_batch: int, seq_len: int, hidden: int, layers: int, heads: int,
                     precision: str, gradient_checkpointing: bool) -> float:
    """Korthikanti et al. (2022) activation memory of ``layers`` transformer layers (see module doc)."""
    scale = 2.0 if precision == "fp32" else 1.0
    sbh = seq_len * micro_batch * hidden
    per_layer = sbh * (34 + 5 * heads * seq_len / hidden) * scale
    if gradient_checkpointing:
        return layers * 2 * sbh * scale + per_layer
    return layers * per_layer


def estimate_memory(params: int, *, precision: str = "bf16", stage: int = 0, offload_optimizer: str = "none",
                    offload_param: str = "none", num_gpus: int = 1, micro_batch: int = 1, seq_len: int = 128,
                    hidden: int = 1024, layers: int = 24, gradient_checkpointing: bool = False,
                    heads: int | None = None, autocast: bool = False) -> MemoryEstimate:
    """Per-GPU memory of one training step under ZeRO ``stage`` (see the module doc).

    ``autocast``: the plain path's mixed precision (no DeepSpeed): weights, gradients and AdamW
    states stay fp32 and only the activations are ``precision``.
    """
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"precision: must be one of {' '.join(BYTES_PER_PARAM)}, got {precision!r}")
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage: must be one of 0 1 2 3, got {stage!r}")
    if offload_param != "none" and stage != 3:
        raise ValueError("offload_param: parameter offload needs stage 3")
    if num_gpus < 1:
        raise ValueError(f"num_gpus: must be >= 1, got {num_gpus}")
    w, g, o = (params * b for b in BYTES_PER_PARAM["fp32" if autocast else precision])
    weights = w / num_gpus if stage >= 3 else w
    grads = g / num_gpus if stage >= 2 else g
    optimizer = o / num_gpus if stage >= 1 else o
    cpu = 0.0
    if offload_optimizer != "none":
        cpu += o                      # every GPU's partition lives in host memory
        optimizer = 0.0
    if offload_param != "none":
        cpu += w
        weights = 0.0
    acts = activation_bytes(micro_batch=micro_batch, seq_len=seq_len, hidden=hidden, layers=layers,
                            heads=heads or max(1, hidden // 64), precision=precision,
                            gradient_checkpointing=gradient_checkpointing)
    return MemoryEstimate(weights=weights, grads=grads, optimizer_states=optimizer, activations=acts, cpu_bytes=cpu)


def estimate_for(preset: ModelPreset, **kwargs) -> MemoryEstimate:
    """``estimate_memory`` with the preset's parameters and shapes."""
    return estimate_memory(preset.params, hidden=preset.hidden, layers=preset.layers, heads=preset.heads, **kwargs)


def fits(estimate: MemoryEstimate, gpu_memory_bytes: float, *, reserve_fraction: float = 0.0) -> bool:
    """Whether the estimate fits a GPU, keeping ``reserve_fraction`` of it free for overheads."""
    return estimate.total <= gpu_memory_bytes * (1.0 - reserve_fraction)
