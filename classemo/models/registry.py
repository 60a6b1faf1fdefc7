"""Model registry and factory, after timm's `@register_model` / `create_model`."""

from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a preset; the function's name is the registry name. A preset only pins hyperparameters."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(prefix: str = "") -> list[str]:
    return sorted(n for n in _MODELS if n.startswith(prefix))


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered preset, with keyword overrides of its hyperparameters."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models are {list_models()}")
    return _MODELS[name](**overrides)
