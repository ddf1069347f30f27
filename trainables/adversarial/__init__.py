"""Adversarial training methods: ``TrainingStep``s that perturb the word embeddings.

Adding a method = adding one module here with an ``AdversarialMethod`` subclass decorated by
``@register`` whose ``Settings`` is a frozen settings dataclass; ``build_step`` turns a config such as
``{"method": "freelb", "adv_steps": 3}`` into the step ``train(..., step_fn=)`` takes.
"""
from __future__ import annotations

import dataclasses

from trainables.registry import Registry
from trainables.steps import TrainingStep, plain_step

NONE = "none"
METHODS = Registry("adversarial method", __name__)
#: class decorator: make a method available by its ``name``
register = METHODS.register


def method_names() -> list[str]:
    """Every method a config may name, ``"none"`` (the plain step) first."""
    return [NONE, *METHODS.names()]


def _method(config: dict):
    from trainables.adversarial.base import did_you_mean

    if not isinstance(config, dict):
        raise ValueError(f"adversarial: expected a mapping with a 'method', got {config!r}")
    if "method" not in config:
        raise ValueError(f"method: missing; choose from {', '.join(method_names())}")
    name = config["method"]
    if name != NONE and name not in METHODS:
        raise ValueError(f"method: unknown adversarial method {name!r}"
                         f"{did_you_mean(str(name), method_names())}; "
                         f"choose from {', '.join(method_names())}")
    return name, {k: v for k, v in config.items() if k != "method"}


def validate_adversarial(config: dict) -> dict:
    """A config with every setting filled in: ``{"method": ..., **settings}``.

    Raises ``ValueError("<field>: <problem>")`` (with a did-you-mean for near misses)."""
    name, settings = _method(config)
    if name == NONE:
        if settings:
            field = next(iter(settings))
            raise ValueError(f"{field}: method 'none' takes no settings")
        return {"method": NONE}
    return {"method": name, **dataclasses.asdict(_settings(name, settings))}


def build_step(config: dict | None) -> TrainingStep:
    """The training step for a config: ``None`` or method ``none`` give ``plain_step``."""
    if config is None:
        return plain_step
    name, settings = _method(config)
    if name == NONE:
        validate_adversarial(config)
        return plain_step
    return METHODS[name](_settings(name, settings))


def _settings(name: str, settings: dict):
    """The method's frozen settings dataclass (its ``Settings``) from a config's values."""
    from trainables.adversarial.base import validate_settings

    return validate_settings(METHODS[name].Settings, settings, owner=name)


__all__ = ["METHODS", "build_step", "method_names", "register", "validate_adversarial"]
