"""Paper components, one file each, built through `create_model`."""

from classemo.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
