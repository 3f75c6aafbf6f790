"""mambabench's model zoo: the registry, the models, their layers and the ops they run on."""

from .registry import ModelEntry, create_model, get_entry, list_models

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models"]
