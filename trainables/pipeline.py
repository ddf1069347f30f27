"""Training input pipeline: batches collated ahead of the GPU, in pinned memory.

Collation (an Arrow ``select`` and dynamic padding) runs on the CPU; on a GPU the next batches
are collated in a background thread while the current step runs, into page-locked memory so
their copy to the device (``non_blocking``) overlaps compute. The order is the iterator's own,
so a resumed run replays the same batches. On the CPU nothing is gained by a thread (it would
compete with the step for the same cores, and share the CPU random generator with dropout),
so the iterator is used as it is.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
_END = object()


def pin(batch):
    """A collated batch with its tensors in pinned memory (other values as they are)."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[1], dict):  # (task name, batch)
        return batch[0], pin(batch[1])
    if isinstance(batch, dict):
        return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


def prefetched(items: Iterable[T], depth: int = 2, pin_memory: bool = False) -> Iterator[T]:
    """``items`` produced ``depth`` ahead in a background thread (exceptions re-raised here).

    Leaving the loop early (``max_steps``) stops the producer at its next item.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(pin(item) if pin_memory else item)
            buffer.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="xstilts-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def training_batches(items: Iterable[T], device: torch.device | None) -> Iterable[T]:
    """What the training loop iterates: prefetched into pinned memory on CUDA, else ``items``."""
    if device is not None and device.type == "cuda":
        return prefetched(items, depth=2, pin_memory=True)
    return items
