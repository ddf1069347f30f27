"""Where a trial works and what it continues from: the local copy of a trial folder in object
storage (``stage_trial``), the mirroring of that copy back (``Mirror``), and the resume state a
restarted trial reads (``load_resume_state``)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from trainables import storage
from trainables.contract import TrialConfig

log = logging.getLogger(__name__)


def stage_trial(cfg: TrialConfig, rank: int | None = None) -> Path:
    """A fresh local copy of a remote trial folder to work in (``resume/`` and ``model/``).

    The remote folder is the truth (another node may have got further), so a copy left on this
    node by an earlier attempt is replaced. Ranks of a multi-worker trial each take their own
    folder (``rank<r>/``, on whichever node they run); only rank 0 needs ``model/``.
    """
    local = storage.staging_dir(cfg.output_dir, cfg.cache_dir)
    if rank is not None:
        local = local / f"rank{rank}"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    for part in ("resume", "model") if rank in (None, 0) else ("resume",):
        if storage.download_dir(storage.join(cfg.output_dir, part), local / part):
            log.info("trial %s: continuing from %s", cfg.trial_id, storage.display(storage.join(cfg.output_dir, part)))
    return local


class Mirror:
    """Keeps a remote trial folder up to date with the local one it is trained in.

    After an epoch, before its report: ``model/`` when it improved (rank 0), the ``resume/``
    files, ``resume/state.pt`` last, then DeepSpeed checkpoint tags rank 0 no longer has are
    removed. With several ranks, each uploads its own checkpoint shards before the report, and
    rank 0 uploads ``state.pt`` after it: the report is a barrier over the ranks, so the shards
    that ``state.pt`` points at are all up by then.
    """

    def __init__(self, remote: str, local: Path, is_main: bool, ranks: int = 1):
        self.remote, self.local, self.is_main, self.ranks = remote, local, is_main, ranks

    def before_report(self, improved: bool) -> None:
        resume = storage.join(self.remote, "resume")
        if self.is_main:
            if improved:
                storage.upload_dir(self.local / "model", storage.join(self.remote, "model"))
            storage.upload_dir(self.local / "resume", resume, exclude=("state.pt",))
            if self.ranks == 1:
                self._state()
            return
        # another rank: only the checkpoint shards it wrote (its state.pt and DeepSpeed's
        # `latest` are copies downloaded at the start)
        for tag in sorted((self.local / "resume" / "deepspeed").glob("step*")):
            storage.upload_dir(tag, storage.join(resume, "deepspeed", tag.name))

    def after_report(self) -> None:
        if self.is_main and self.ranks > 1:
            self._state()

    def checkpoint(self, improved: bool) -> None:
        """A mid-epoch resume state, mirrored like an epoch's (no report: a barrier of its own
        orders every rank's checkpoint shards before rank 0's ``state.pt``)."""
        self.before_report(improved)
        if self.ranks > 1:
            torch.distributed.barrier()
            self.after_report()

    def _state(self) -> None:
        state = self.local / "resume" / "state.pt"
        if state.is_file():
            storage.upload_file(state, storage.join(self.remote, "resume", "state.pt"))
        tags = storage.join(self.remote, "resume", "deepspeed")
        keep = {p.name for p in (self.local / "resume" / "deepspeed").glob("step*")}
        for name in storage.list_dirs(tags):
            if name.startswith("step") and name not in keep:
                storage.delete_dir(storage.join(tags, name))


RESUME_FIELDS = ("optimization", "epoch", "step", "best", "best_epoch")


def load_resume_state(path: Path, device: torch.device) -> dict | None:
    """The trial's resume state, or None to start fresh: a damaged one (truncated by a full disk
    or a killed upload, or pointing at a DeepSpeed checkpoint that is not there) is named in one
    warning and removed with what it points at, and the trial restarts from scratch."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False, map_location=device)
        if not isinstance(state, dict) or any(k not in state for k in RESUME_FIELDS):
            raise ValueError(f"not a resume state (fields {sorted(state) if isinstance(state, dict) else type(state).__name__})")
        tag = state["optimization"].get("tag") if isinstance(state["optimization"], dict) else None
        if tag is not None and not (path.parent / "deepspeed" / tag).is_dir():
            raise FileNotFoundError(f"its DeepSpeed checkpoint {tag} is missing")
        return state
    except Exception as exc:  # noqa: BLE001 - any unreadable state means the same: start over
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("%s is damaged (%s: %s): the trial starts from scratch", path, type(exc).__name__, reason)
        shutil.rmtree(path.parent, ignore_errors=True)
        return None
