"""Joining an existing Ray cluster. Ray-free on purpose: it must run before ``ray`` is imported."""
from __future__ import annotations

import os
from pathlib import Path


def use_cluster_token() -> None:
    """Connect to a cluster that has Ray's token authentication on (on by default in Ray 2.60).

    Ray 2.60's ``ray.init(address=...)`` does not switch to token mode by itself even when the
    token that ``ray start`` wrote is there, and the connection is refused. Ray reads the mode
    when it is imported, so this runs first; an explicit ``RAY_AUTH_MODE`` is left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.expanduser().is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
