"""One registry of the library's methods, training strategies and data modules, in the spirit
of timm's ``register_model`` / ``list_models``.

A method (a loss), a training strategy or a data module registers itself where it is defined,
under a short name (the name of its config file, ``ce`` for ``zoo/configs/losses/ce.yaml``).
Everything that lists them reads this registry: the names ``ln_lightning`` and its packages
export, the tests' lists of methods and the checks that the docs describe each. Adding a loss
is its file (with :func:`register_method`), its config and its section in docs/losses.md; a
strategy, its file (:func:`register_strategy`), config and section in docs/strategies.md.

The registry fills as the modules that define the entries are imported; :func:`list_methods`,
:func:`list_strategies` and :func:`list_datamodules` import their package first
(``ln_lightning.losses``, ``ln_lightning.strategies``, ``ln_lightning.data``), which imports
every module in it. Standard library only.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = [
    "Registered",
    "class_names",
    "find_class",
    "get_datamodule",
    "get_method",
    "get_strategy",
    "import_package",
    "list_datamodules",
    "list_methods",
    "list_strategies",
    "register_datamodule",
    "register_method",
    "register_strategy",
    "registered",
]

T = TypeVar("T", bound=type)
#: Kind -> the package whose import registers every entry of that kind.
PACKAGES = {
    "method": "ln_lightning.losses",
    "datamodule": "ln_lightning.data",
    "strategy": "ln_lightning.strategies",
}
_ENTRIES: dict[str, dict[str, Registered]] = {kind: {} for kind in PACKAGES}


@dataclass(frozen=True)
class Registered:
    """One entry of the registry.

    Attributes:
        name: The short name (``ce``), also the stem of its config file.
        kind: ``method``, ``strategy`` or ``datamodule``.
        cls: The class.
        config: Its config file in the zoo (``zoo/configs/losses/ce.yaml``), if it has one.
        example: Arguments of a small, quick instance (for tests and examples).

    Example:
        >>> entry = get_method("ce")
        >>> entry.cls.__name__, entry.config
        ('CrossEntropy', 'zoo/configs/losses/ce.yaml')
        >>> type(entry.build()).__name__
        'CrossEntropy'
    """

    name: str
    kind: str
    cls: type
    config: str | None = None
    example: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def summary(self) -> str:
        """The first line of the class's docstring."""
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""

    def build(self, **overrides: Any) -> Any:
        """An instance with the :attr:`example` arguments (and ``overrides``)."""
        return self.cls(**{**self.example, **overrides})


def _register(kind: str, name: str, config: str | None, example: Mapping[str, Any] | None):
    def decorate(cls: T) -> T:
        known = _ENTRIES[kind].get(name)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"the {kind} name {name!r} is taken by {known.cls.__qualname__}; give "
                f"{cls.__qualname__} another name."
            )
        entry = Registered(name, kind, cls, config, MappingProxyType(dict(example or {})))
        _ENTRIES[kind][name] = entry
        return cls

    return decorate


def register_method(
    name: str, *, config: str | None = "", example: Mapping[str, Any] | None = None
) -> Callable[[T], T]:
    """Class decorator: register a method (a loss) under ``name``.

    Args:
        name: Its short name; its config is ``zoo/configs/losses/<name>.yaml`` unless
            ``config`` says otherwise (``None``: it has none).
        config: Its config file in the zoo.
        example: Arguments of a small, quick instance.
    """
    path = f"zoo/configs/losses/{name}.yaml" if config == "" else config
    return _register("method", name, path, example)


def register_datamodule(
    name: str, *, config: str | None = None, example: Mapping[str, Any] | None = None
) -> Callable[[T], T]:
    """Class decorator: register a data module under ``name`` (``config``: the zoo config that
    trains on it, if any; ``example``: arguments of a quick instance)."""
    return _register("datamodule", name, config, example)


def register_strategy(
    name: str, *, config: str | None = "", example: Mapping[str, Any] | None = None
) -> Callable[[T], T]:
    """Class decorator: register a training strategy under ``name`` (its config is
    ``zoo/configs/strategies/<name>.yaml`` unless ``config`` says otherwise)."""
    path = f"zoo/configs/strategies/{name}.yaml" if config == "" else config
    return _register("strategy", name, path, example)


def registered(kind: str) -> list[Registered]:
    """Every entry of ``kind`` (``method``, ``strategy`` or ``datamodule``), by name.

    Example:
        >>> [entry.name for entry in registered("method")][:3]
        ['ce', 'forward', 'forward_ln']
    """
    if kind not in PACKAGES:
        raise ValueError(f"kind must be one of {sorted(PACKAGES)}; got {kind!r}.")
    importlib.import_module(PACKAGES[kind])  # its import registers every entry
    return [_ENTRIES[kind][name] for name in sorted(_ENTRIES[kind])]


def _names(kind: str, pattern: str) -> list[str]:
    return [e.name for e in registered(kind) if fnmatch.fnmatchcase(e.name, pattern)]


def list_methods(pattern: str = "*") -> list[str]:
    """The short names of the registered methods matching ``pattern`` (shell-style), sorted.

    Example:
        >>> list_methods("het*")
        ['het', 'het_tau', 'het_tau_full']
    """
    return _names("method", pattern)


def list_strategies(pattern: str = "*") -> list[str]:
    """The short names of the registered training strategies matching ``pattern``, sorted.

    Example:
        >>> list_strategies("co*")
        ['coteaching']
    """
    return _names("strategy", pattern)


def list_datamodules(pattern: str = "*") -> list[str]:
    """The short names of the registered data modules matching ``pattern``, sorted.

    Example:
        >>> list_datamodules("cifar*")
        ['cifar10', 'cifar100', 'cifar100n', 'cifar10n']
    """
    return _names("datamodule", pattern)


def _get(kind: str, name: str) -> Registered:
    entries = {entry.name: entry for entry in registered(kind)}
    if name in entries:
        return entries[name]
    guess = difflib.get_close_matches(name, list(entries), n=1)
    hint = f" Did you mean {guess[0]!r}?" if guess else ""
    raise ValueError(f"no {kind} is registered as {name!r}.{hint} Known: {', '.join(entries)}.")


def get_method(name: str) -> Registered:
    """The registered method ``name`` (a one-line error with the closest name otherwise)."""
    return _get("method", name)


def get_strategy(name: str) -> Registered:
    """The registered training strategy ``name``."""
    return _get("strategy", name)


def get_datamodule(name: str) -> Registered:
    """The registered data module ``name``."""
    return _get("datamodule", name)


def find_class(name: str) -> type | None:
    """The registered class whose class name is ``name`` (``CrossEntropy``), if any; methods
    are looked up first, so a loss's name does not load the strategies or the data modules."""
    for kind in PACKAGES:
        for entry in registered(kind):
            if entry.cls.__name__ == name:
                return entry.cls
    return None


def import_package(package: str, path: Iterable[str], kind: str) -> dict[str, type]:
    """Import every module of ``package`` (its ``__path__``), which registers what they define,
    and return the classes of ``kind`` by class name: what the package exports.
    ``ln_lightning.losses`` and ``ln_lightning.data`` call it from their ``__init__``, so a new
    file there needs no line elsewhere."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
    return {
        entry.cls.__name__: entry.cls
        for entry in _ENTRIES[kind].values()
        if entry.cls.__module__.startswith(f"{package}.")
    }


def class_names(kind: str) -> list[str]:
    """The class names of every entry of ``kind`` (what its package exports)."""
    return sorted(entry.cls.__name__ for entry in registered(kind))
