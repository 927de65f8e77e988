"""One method abstraction for every domain: a config, a network, a loss, ``sample``, save / load.

A method is the unit a user trains and samples (MDLM, SGMSE+, a slice prior, a diffusion
policy), in the spirit of LeRobot's per-policy units: one class holds

- ``config``: a :class:`Config` dataclass that serialises itself (``to_dict`` / ``from_dict``,
  nested dataclasses and tuples included), so a saved method rebuilds without pickles;
- ``net``: the network, built from the config by :meth:`Method.build_net`;
- ``loss_fn(net, batch)``: the training loss that :class:`polydiff.core.train.DiffusionModule`
  optimises;
- ``sample(**options)``: the method's sampling recipe, one call with keyword options;
- ``save(folder)`` / :func:`load_method`: ``model.safetensors`` + ``config.json`` (weights are
  never unpickled).

Methods register by ``(domain, name)``; the command line and the benchmarks look them up with
:func:`method_class` / :func:`load_method` instead of dispatching on method names.

    @register_method
    class MyMethod(Method):
        domain, name, config_class = "toy", "gauss", GaussConfig
        def build_net(self): ...
        def loss_fn(self, net, batch): ...
        def sample(self, n, *, steps=20, generator=None): ...
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from polydiff.core.utils import resolve_device

__all__ = [
    "FORMAT",
    "Config",
    "Method",
    "list_methods",
    "load_method",
    "method_class",
    "read_method_config",
    "register_method",
]

FORMAT = "polydiff-method"
"""The ``format`` field of every method's ``config.json``."""

C = TypeVar("C", bound="Config")


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else _fields_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _fields_to_dict(config: Any) -> dict[str, Any]:
    return {f.name: _to_json(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _strip_optional(hint: Any) -> Any:
    """``X | None`` -> ``X`` (the type a JSON value of a nullable field is rebuilt as)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _from_json(hint: Any, value: Any, where: str) -> Any:
    """Rebuild a JSON value as the field type ``hint`` says: nested configs, tuples."""
    if value is None:
        return None
    hint = _strip_optional(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        if hasattr(hint, "from_dict"):
            return hint.from_dict(value, source=where)
        return _dict_to_fields(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v, where) for v in value)
        if args and len(args) == len(value):
            return tuple(_from_json(a, v, where) for a, v in zip(args, value))
        return tuple(value)
    return value


def _dict_to_fields(cls: type, data: dict[str, Any], source: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a {cls.__name__} must be a JSON object, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _from_json(hints.get(k, Any), v, source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # e.g. a required field missing
        raise ValueError(f"{source}: {cls.__name__}: {err}") from None


class Config:
    """Mixin for a method's config dataclass: ``to_dict`` gives plain JSON values (nested
    configs as dicts, tuples as lists) and ``from_dict`` rebuilds them from the type hints,
    naming ``source`` and the unknown fields in its error. Override both where a field needs
    more (e.g. a dict with integer keys)."""

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
        return _dict_to_fields(cls, data, source)


class Method:
    """Base of every method: see the module docstring. Subclasses set ``domain``, ``name`` and
    ``config_class`` and implement :meth:`build_net`, :meth:`loss_fn` and :meth:`sample`."""

    domain: ClassVar[str]
    name: ClassVar[str]
    config_class: ClassVar[type]
    version: ClassVar[int] = 1  # of the saved layout; bump when config.json changes meaning

    def __init__(self, config: Any, net: nn.Module | None = None) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{self.domain}/{self.name}: config must be a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.net = net if net is not None else self.build_net()

    # --- what a method implements ------------------------------------------------------------

    def build_net(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__}.build_net")

    def loss_fn(self, net: nn.Module, batch: Any) -> Tensor | dict[str, Tensor]:
        """The training loss for :class:`polydiff.core.train.DiffusionModule`: a scalar, or a
        dict with the optimised ``"loss"`` and other logged scalars."""
        raise NotImplementedError(f"{type(self).__name__}.loss_fn")

    def sample(self, *args: Any, **options: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.sample")

    # --- saving and loading ------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Extra JSON fields saved beside the config (e.g. the tokenizer's fingerprint)."""
        return {}

    def save_extra(self, folder: Path) -> None:
        """Files saved beside the weights besides ``config.json`` (e.g. the tokenizer)."""

    def checkpoint_config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "domain": self.domain,
            "method": self.name,
            "config": self.config.to_dict(),
            **self.metadata(),
        }

    def save(self, folder: str | Path, module: nn.Module | None = None, ema: bool = True) -> Path:
        """Write ``model.safetensors`` (``module``: a trained DiffusionModule, its EMA weights by
        default; else ``self.net``), ``config.json`` and :meth:`save_extra`, each atomically."""
        from polydiff.core.train.weights import export

        folder = Path(folder)
        export(
            module if module is not None else self.net, folder, self.checkpoint_config(), ema=ema
        )
        self.save_extra(folder)
        return folder

    @classmethod
    def from_saved(cls, folder: Path, config: Any, saved: dict[str, Any], **kwargs: Any) -> Method:
        """The method rebuilt from a saved folder's config (before its weights are loaded);
        ``saved`` is the whole ``config.json``. Override to restore extra state."""
        if kwargs:
            raise TypeError(f"{cls.__name__} takes no load options, got {sorted(kwargs)}")
        return cls(config)

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.parameters()), torch.empty(0)).device

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


_REGISTRY: dict[tuple[str, str], type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` known as ``(cls.domain, cls.name)``."""
    for attr in ("domain", "name", "config_class"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} needs a class attribute {attr!r} to be registered")
    key = (cls.domain, cls.name)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"method {cls.domain}/{cls.name} is already registered")
    _REGISTRY[key] = cls
    return cls


def _import_domain(domain: str) -> None:
    """Import ``polydiff.<domain>.methods``, which registers the domain's methods (the core
    names no domain: the module is found by the name in a saved config or a lookup)."""
    try:
        importlib.import_module(f"polydiff.{domain}.methods")
    except ModuleNotFoundError as err:
        if err.name not in (f"polydiff.{domain}", f"polydiff.{domain}.methods"):
            raise


def list_methods(domain: str | None = None) -> list[str]:
    """``domain/name`` of every registered method (of one domain: its names), sorted."""
    if domain is not None:
        _import_domain(domain)
        return sorted(n for d, n in _REGISTRY if d == domain)
    return sorted(f"{d}/{n}" for d, n in _REGISTRY)


def method_class(domain: str, name: str) -> type[Method]:
    """The registered method class; an unknown name is one clear ValueError listing the known."""
    if (domain, name) not in _REGISTRY:
        _import_domain(domain)
    if (domain, name) not in _REGISTRY:
        known = ", ".join(list_methods(domain)) or "none"
        raise ValueError(f"unknown {domain} method {name!r}; known: {known}")
    return _REGISTRY[(domain, name)]


def read_method_config(folder: str | Path, domain: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of a saved method, checked to be one (of ``domain`` if given)."""
    from polydiff.core.train.weights import CONFIG_FILE, load_config

    folder = Path(folder)
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; {folder} is not a saved polydiff method")
    data = load_config(folder)
    if data.get("format") != FORMAT or not isinstance(data.get("method"), str):
        raise ValueError(
            f"{file}: not a saved polydiff method (format {data.get('format')!r}, "
            f"method {data.get('method')!r})"
        )
    if domain is not None and data.get("domain") != domain:
        raise ValueError(f"{file}: a {data.get('domain')} method, not a {domain} one")
    return data


def load_method(
    folder: str | Path,
    *,
    domain: str | None = None,
    device: str | torch.device = "cpu",
    saved: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Method:
    """Rebuild a method saved by :meth:`Method.save`: config from ``config.json``, weights from
    ``model.safetensors`` (no unpickling), the network in eval mode on ``device``. ``saved``:
    that ``config.json`` as the caller read it (e.g. converted from a domain's older layout).
    ``kwargs`` go to the class's :meth:`Method.from_saved` (e.g. a text method's tokenizer)."""
    from polydiff.core.train.weights import CONFIG_FILE, load_weights

    folder, device = Path(folder), resolve_device(device)  # before reading anything
    data = read_method_config(folder, domain) if saved is None else saved
    cls = method_class(data["domain"], data["method"])
    config = cls.config_class.from_dict(data.get("config", {}), source=str(folder / CONFIG_FILE))
    method = cls.from_saved(folder, config, data, **kwargs)
    load_weights(folder, method.net)
    method.net.to(device).eval()
    return method
