"""Which ``Optimization`` a trial trains with, and what that choice means for its model.

Plain AdamW (one process or DDP) and DeepSpeed ZeRO differ beyond the update: where the model
is placed, who wraps it for data parallelism, whether the trained module is still usable after
training, and how the dev-selected weights come back for evaluation. A factory answers those
for its kind, so the trial asks it instead of branching on DeepSpeed. ``train`` calls the
factory as its ``optimization`` (only the loop knows the step count); the factory keeps what it
built, for the trial's saves (``factory.optimization.save_model``) and ``close``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from trainables.deepspeed_backend import DeepSpeedOptimization, single_process_env
from trainables.model import build_on_device, load_saved_weights
from trainables.steps import Optimization, PlainOptimization


class OptimizationFactory:
    """What the two kinds share: the Optimization built for the running ``train`` call."""

    #: appended to the trial's first log line
    note = ""
    #: whether the trained module is still a usable model once training ends
    keeps_model = True

    def __init__(self, device: torch.device, precision) -> None:
        self.device, self.precision = device, precision
        self.optimization: Optimization | None = None

    def close(self) -> None:
        """Release the Optimization of the last ``train`` call (each OOM retry builds its own)."""
        if self.optimization is not None:
            self.optimization.close()
            self.optimization = None


class PlainFactory(OptimizationFactory):
    """Plain AdamW: the model trains (and stays) on the trial's device in its precision."""

    def place(self, model) -> None:
        model.to(self.device)
        model.precision = self.precision

    def distribute(self, model, ctx) -> None:
        """One rank of a multi-worker trial: the model in DDP (``forward_task`` routed through it)."""
        from trainables.distributed import wrap_data_parallel

        wrap_data_parallel(model, ctx)

    def __call__(self, model, settings, total_steps: int) -> Optimization:
        self.optimization = PlainOptimization(model, settings, total_steps, precision=self.precision,
                                              fused=self.device.type == "cuda")
        return self.optimization

    def selected_model(self, model, best_dir: Path, tasks: list):
        """The trained model with the dev-selected weights loaded into it in place."""
        load_saved_weights(model, best_dir)
        return model


class DeepSpeedFactory(OptimizationFactory):
    """A DeepSpeed ZeRO engine: it casts, partitions and syncs the model itself, and its module
    is no model to evaluate after training (the saved weights are built on the device instead)."""

    note = " (DeepSpeed)"
    keeps_model = False

    def __init__(self, device: torch.device, precision, *, settings: dict, gradient_checkpointing: bool,
                 checkpoint_dir: Path) -> None:
        super().__init__(device, precision)
        # the trial's one precision and checkpointing settings, shared with the plain path
        self.settings = {**settings, "precision": precision.name, "gradient_checkpointing": gradient_checkpointing}
        self.checkpoint_dir = checkpoint_dir

    def place(self, model) -> None:
        if self.settings.get("offload_param", "none") == "none":  # offloaded parameters stay on the CPU
            model.to(self.device)
        model.precision = None

    def distribute(self, model, ctx) -> None:
        """Nothing: the engine does the data parallelism."""

    def __call__(self, model, settings, total_steps: int) -> Optimization:
        single_process_env()
        self.optimization = DeepSpeedOptimization(model, settings, total_steps, ds_settings=self.settings,
                                                  checkpoint_dir=self.checkpoint_dir)
        return self.optimization

    def selected_model(self, model, best_dir: Path, tasks: list):
        """The saved weights (16 bit under bf16/fp16 ZeRO-3) built straight on the device in the
        training precision; ``model`` is gone (the engine's module was released)."""
        dtype = self.precision.dtype if self.precision.mixed else torch.float32
        return build_on_device(best_dir, tasks, self.device, dtype)[0]


def optimization_factory(settings: dict, *, training: bool, device: torch.device, precision,
                         resume_dir: Path) -> OptimizationFactory:
    """The factory a trial's ``settings`` ask for: DeepSpeed when configured and the trial trains
    (an evaluation-only trial has nothing to optimize), else plain AdamW. DeepSpeed keeps its
    checkpoints under ``resume_dir/deepspeed``."""
    if settings.get("deepspeed") and training:
        return DeepSpeedFactory(device, precision, settings=settings["deepspeed"],
                                gradient_checkpointing=bool(settings.get("gradient_checkpointing")),
                                checkpoint_dir=resume_dir / "deepspeed")
    return PlainFactory(device, precision)
