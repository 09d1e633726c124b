"""Weights: safe file reading, hub resolution, and one key-mapping table per foreign layout."""

from .load import load_model, model_from_state, save_model

__all__ = ["load_model", "model_from_state", "save_model"]
