"""Training uvrsep's own models: data preparation, on-the-fly mixing, the training loop."""

from .data import PackedSet, Source, make_example, prepare_dataset, sources_from_manifest
from .loop import TrainConfig, export_model, train, validate

__all__ = [
    "PackedSet",
    "Source",
    "TrainConfig",
    "export_model",
    "make_example",
    "prepare_dataset",
    "sources_from_manifest",
    "train",
    "validate",
]
