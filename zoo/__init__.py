"""mambabench's model zoo: the registry, the models, their layers and the ops they run on."""

from .entries import ModelEntry
from .registry import create_model, get_entry, list_models

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models"]
