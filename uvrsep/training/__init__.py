"""Training uvrsep's own models: data preparation, on-the-fly mixing, the training loop."""

from .data import PackedSet, Source, make_example, prepare_dataset, sources_from_manifest
from .loop import TrainConfig, compact_checkpoint, export_model, train, validate

__all__ = [
    "PackedSet",
    "Source",
    "TrainConfig",
    "compact_checkpoint",
    "export_model",
    "make_example",
    "prepare_dataset",
    "sources_from_manifest",
    "train",
    "validate",
]
