"""Checked parameters: one place for every default, values validated against their annotations and bounds.

Each configurable class (a tracker, the VEM engine's :class:`~mixdvae.vem.VEMConfig`, a trajectory prior)
declares its parameters once, with their defaults and type annotations, in its signature or dataclass fields,
and may bound them in a ``BOUNDS`` class attribute::

    BOUNDS = {"max_iter": Range(0), "temperature": Range(0, exclusive_low=True), "clutter_model": ("box", "area")}

:func:`check_params` turns a mapping of user values (a YAML file, keyword arguments) into validated values:
unknown keys, wrong types (``window_s: abc``) and out-of-range values (``max_age_s: -5``) raise
:class:`~mixdvae.errors.ConfigError` naming the source and the key. YAML numbers are converted where that is
lossless (``5`` for a float, a list for a tuple).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mixdvae.errors import ConfigError, DataNotFoundError, UsageError


@dataclass(frozen=True)
class Range:
    """Numeric bounds of a parameter (``None``: unbounded on that side); applies to every element of a tuple."""

    low: float | None = None
    high: float | None = None
    exclusive_low: bool = False

    def check(self, value: float) -> str | None:
        """A complaint about ``value``, or None when it lies in range."""
        if isinstance(value, float) and math.isnan(value):
            return "NaN is not allowed"
        if self.low is not None and (value < self.low or (self.exclusive_low and value == self.low)):
            return f"must be {'>' if self.exclusive_low else '>='} {self.low}, got {value}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high}, got {value}"
        return None


Bound = Range | tuple  # a numeric range, or the tuple of allowed values


def parse_device(device, owner: str, key: str = "device"):
    """A torch device from ``"cpu"``, ``"cuda"``, ``"cuda:1"``...: ConfigError when not a device, UsageError
    without CUDA; the messages start with ``owner`` and name ``key`` (a config key or a command-line option).
    Torch is imported here only when called: the tools stay quick to start."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{owner}: {key}: {device!r} is not a device (cpu, cuda, cuda:N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{owner}: {key} {device}: this torch build or machine has no CUDA device")
    return parsed


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is ``{}``); anything else is a ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: configuration file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a configuration must be a mapping of parameters, got {type(config).__name__}")
    return config


def parameter_specs(target: Callable | type) -> dict[str, tuple[Any, Any]]:
    """``{name: (annotation, default)}`` of a dataclass's fields or a callable's keyword parameters
    (``self``, ``*args`` and ``**kwargs`` left out; ``inspect.Parameter.empty`` where there is no default)."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return {
            f.name: (hints[f.name], f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty)
            for f in dataclasses.fields(target) if f.init
        }
    function = target.__init__ if isinstance(target, type) else target
    hints = typing.get_type_hints(function)
    params = inspect.signature(function).parameters.values()
    return {p.name: (hints.get(p.name, Any), p.default) for p in params
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}


def check_params(values: Mapping[str, Any], specs: Mapping[str, tuple[Any, Any]],
                 bounds: Mapping[str, Bound] | None = None, owner: str = "parameters") -> dict[str, Any]:
    """Validate and convert ``values`` against ``specs`` (see :func:`parameter_specs`) and ``bounds``.

    Returns the converted values (only the keys given). Raises :class:`ConfigError` for an unknown key, a
    value of the wrong type or out of its bounds; the message starts with ``owner`` and names the key.
    """
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(f"{owner}: unknown parameter(s) {unknown}; allowed: {sorted(specs)}")
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = _convert(value, specs[name][0])
            bound = (bounds or {}).get(name)
            if bound is not None:
                _check_bound(checked[name], bound)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{owner}: {name}: {err}") from None
    return checked


def validate_fields(instance: Any, owner: str) -> None:
    """Validate every field of a dataclass ``instance`` against its annotations and its class's ``BOUNDS``, and
    store the converted values (``5`` becomes ``5.0`` for a float, a list a tuple): a dataclass's
    ``__post_init__``. Raises :class:`ConfigError` naming ``owner`` and the key."""
    values = {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}
    checked = check_params(values, parameter_specs(type(instance)), getattr(instance, "BOUNDS", None), owner)
    for name, value in checked.items():
        object.__setattr__(instance, name, value)  # also for frozen dataclasses


def _check_bound(value: Any, bound: Bound) -> None:
    if value is None:
        return
    if isinstance(bound, Range):
        for item in value if isinstance(value, tuple) else (value,):
            problem = bound.check(item)
            if problem:
                raise ValueError(problem)
    elif value not in bound:
        raise ValueError(f"must be one of {list(bound)}, got {value!r}")


def _convert(value: Any, annotation: Any) -> Any:
    """``value`` as the type ``annotation`` names; TypeError/ValueError with a short reason otherwise."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None:
            if type(None) in options:
                return None
            raise ValueError("must not be empty (null)")
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError(" or ".join(errors))
    if origin is tuple:
        items = typing.get_args(annotation)
        if len(items) == 2 and items[1] is Ellipsis:  # tuple[X, ...]: any length
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"expected a non-empty list, got {value!r}")
            return tuple(_convert(v, items[0]) for v in value)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise ValueError(f"expected a list of {len(items)} values, got {value!r}")
        return tuple(_convert(v, t) for v, t in zip(value, items, strict=True))
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(f"must be one of {list(typing.get_args(annotation))}, got {value!r}")
        return value
    return _convert_scalar(value, annotation)


def _convert_scalar(value: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if isinstance(kind, type) and isinstance(value, kind):
        return value
    raise ValueError(f"expected {getattr(kind, '__name__', kind)}, got {value!r}")


def dataclass_overrides(cls, overrides: list[dict], option: str = "--set") -> dict:
    """The ``--set KEY=VALUE`` overrides (:func:`parse_override`'s dicts) of a flat settings dataclass ``cls``
    merged into one dict; :class:`UsageError` naming the key and the valid ones for a key that is not a field."""
    fields = {f.name for f in dataclasses.fields(cls)}
    out: dict = {}
    for override in overrides:
        for key, value in override.items():
            if key not in fields or isinstance(value, dict):
                raise UsageError(f"{option} {key}: not a {cls.__name__} setting "
                                 f"(settings: {', '.join(sorted(fields))})")
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """``a.b.c=value`` (value parsed as YAML) to a nested dict."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)
    return out
