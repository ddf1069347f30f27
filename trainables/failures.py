"""Which trial failures a retry can fix.

Ray Tune retries every failed trial ``max_failures`` times. A retry helps when the failure came
from outside the trial (a node lost, memory that ran out, a connection dropped); it cannot help
when the trial itself is wrong: a missing or corrupt data file, a bad option, a bug. Those are
*deterministic*: ``tune_entry`` ends such a trial without an exception (its ``error.txt`` says
why), so Ray does not run it again, and the driver records its job as failed.

Code inside a trial can raise ``DeterministicError`` (or a subclass) to say so explicitly.
"""
from __future__ import annotations

import pickle

# a retry gives the same error: the input or the code is wrong
DETERMINISTIC = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                 ValueError, TypeError, LookupError, UnicodeError, pickle.UnpicklingError)
# a retry may pass: the machine, the network or memory failed
TRANSIENT = (ConnectionError, TimeoutError, MemoryError)


class DeterministicError(Exception):
    """A trial failure that a retry cannot fix (raise it, or subclass it, inside a trial)."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen, out, pending = set(), [], [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        pending += [current.__cause__, current.__context__,
                    *(getattr(current, "worker_failures", None) or {}).values()]
    return out


def is_deterministic(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps: causes, contexts, Ray Train's per-worker errors) is
    a ``DeterministicError`` or one of ``DETERMINISTIC``, and nothing in it is transient (out of
    memory, a lost connection)."""
    chain = _chain(exc)
    if any(isinstance(e, DeterministicError) for e in chain):
        return True
    if any(isinstance(e, TRANSIENT) or _out_of_memory(e) for e in chain):
        return False
    return any(isinstance(e, DETERMINISTIC) for e in chain)


def _out_of_memory(exc: BaseException) -> bool:
    message = str(exc).lower()
    return "out of memory" in message or "can't allocate memory" in message or (
        type(exc).__name__ == "OutOfMemoryError")
