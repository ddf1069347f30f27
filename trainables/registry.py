"""Plug-in registries: a package whose modules register classes by name on import.

Tasks, adversarial methods and perturbations are each one file in their package; a registry
imports every module of the package the first time a name is looked up, so adding a file is
all it takes to add a plug-in.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Iterator


class Registry:
    """Classes of one kind, keyed by ``key(cls)``, from the modules of ``package``."""

    def __init__(self, kind: str, package: str, key: Callable[[type], str] = lambda cls: cls.name,
                 skip: tuple[str, ...] = ("base",)) -> None:
        self.kind, self.package, self.key, self.skip = kind, package, key, skip
        self.classes: dict[str, type] = {}
        self._loaded = False

    def register(self, cls: type) -> type:
        """Class decorator: make ``cls`` available by its key."""
        name = self.key(cls)
        if name in self.classes and self.classes[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self.classes[name] = cls
        return cls

    def load_all(self) -> None:
        if self._loaded:
            return
        path = importlib.import_module(self.package).__path__
        for module in pkgutil.iter_modules(path):
            if module.name not in self.skip:
                importlib.import_module(f"{self.package}.{module.name}")
        self._loaded = True

    def names(self) -> list[str]:
        self.load_all()
        return sorted(self.classes)

    def __contains__(self, name: object) -> bool:
        self.load_all()
        return name in self.classes

    def __getitem__(self, name: str) -> type:
        self.load_all()
        try:
            return self.classes[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
