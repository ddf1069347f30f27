"""Where a trial computes and in which precision: one rule for every training path.

A trial uses the GPU Ray reserved for it, else the CPU:

* a Ray Train worker (multi-worker trial): the rank's local device (``ray.train.torch.get_device``);
* a single-worker Tune trial: ``cuda:0`` when Ray assigned it a GPU (Ray narrows
  ``CUDA_VISIBLE_DEVICES`` to that GPU), the CPU when it assigned none, even on a GPU node
  (a trial must not use a GPU that another trial reserved);
* outside Ray (benchmarks, tests): ``cuda:0`` when CUDA is there.

A GPU that was reserved but that torch cannot see (a CPU build of torch on a GPU node) is the
defect this module exists to surface: it is logged as a warning and named in the device tag.

Precision is one setting for the plain and the DeepSpeed paths: ``auto`` is bf16 on a GPU that
supports it (Ampere and newer: the speed of 16 bit without fp16's loss scaling), fp32 on the CPU
(CPU autocast is slow on most CPUs and the published numbers were trained in 32 bit).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def ray_assigned_gpus() -> list | None:
    """The GPU ids Ray assigned to this process; None outside a Ray worker."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return None
    if not ray.is_initialized():
        return None
    try:
        mode = ray.get_runtime_context().worker.mode
    except Exception:  # noqa: BLE001 - an unusual runtime: treat as outside Ray
        return None
    if mode != ray.WORKER_MODE:  # the driver process (tests calling run_trial directly)
        return None
    return list(ray.get_gpu_ids())


def pick_device(*, assigned_gpus: list | None, cuda_devices: int,
                train_device: torch.device | str | None = None) -> torch.device:
    """The device rule (see the module docstring), as a pure function of what Ray and torch say."""
    if train_device is not None:
        return torch.device(train_device)
    if assigned_gpus is None:
        return torch.device("cuda:0" if cuda_devices else "cpu")
    if assigned_gpus and cuda_devices:
        return torch.device("cuda:0")
    if assigned_gpus:
        log.warning("this trial reserved GPU(s) %s but torch sees no CUDA device (a CPU build of torch?): "
                    "training on the CPU", assigned_gpus)
    return torch.device("cpu")


def trial_device(ctx=None) -> torch.device:
    """This trial's (or this rank's) device: ``pick_device`` with the live Ray and torch state."""
    return pick_device(assigned_gpus=None if ctx is not None else ray_assigned_gpus(),
                       cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
                       train_device=ctx.device if ctx is not None else None)


def describe_device(device: torch.device) -> str:
    """``cuda:0 NVIDIA H100 80GB HBM3`` or ``cpu (8 threads)``: the MLflow tag of a job's hardware."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    note = ""
    reserved = ray_assigned_gpus()
    if reserved:
        note = f", GPU {reserved} reserved but not visible to torch"
    return f"{device.type} ({torch.get_num_threads()} threads{note})"


def configure_matmul(device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (fp32 paths get tensor cores; no effect elsewhere)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@dataclass(frozen=True)
class Precision:
    """The resolved precision of a trial: ``name`` is fp32, bf16 or fp16."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def autocast(self):
        """The autocast context of a forward pass (a no-op in fp32)."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """``auto`` -> bf16 on a bf16-capable GPU, else fp32; explicit values checked against the device."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision: must be one of {' '.join(PRECISIONS)}, got {requested!r}")
    cuda = device.type == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if requested == "auto":
        return Precision("bf16" if bf16_ok else "fp32", device.type)
    if requested == "fp16" and not cuda:
        raise ValueError(f"precision: fp16 needs a CUDA GPU (this trial runs on {device.type}); "
                         "use bf16 or fp32")
    if requested == "bf16" and cuda and not bf16_ok:
        raise ValueError(f"precision: {torch.cuda.get_device_name(device)} has no bf16 support; use fp16 or fp32")
    return Precision(requested, device.type)


def batch_tokens(batch: dict) -> int:
    """Real (unpadded) tokens in a collated batch: every ``*attention_mask`` summed."""
    return int(sum(int(v.sum()) for k, v in batch.items()
                   if k.endswith("attention_mask") and isinstance(v, torch.Tensor)))


class Throughput:
    """Tokens per second and, on CUDA, peak GPU memory of one epoch of training."""

    def __init__(self, device: torch.device | None) -> None:
        self.cuda = device is not None and device.type == "cuda"
        self.device = device
        self.tokens = 0

    def start(self) -> None:
        self.tokens = 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def add(self, batch: dict) -> None:
        self.tokens += batch_tokens(batch)

    def metrics(self, seconds: float) -> dict[str, float]:
        out = {"train/tokens_per_s": self.tokens / seconds if seconds > 0 else 0.0}
        if self.cuda:
            out["train/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return out
