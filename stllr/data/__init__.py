"""Datasets for S-TLLR experiments.

One entry point for six tasks, all returning ``(frames float32 [T, ...], int label)``:

* recorded (through tonic, reference S-TLLR preprocessing; download once with
  ``python data_scripts/download.py NAME --data-path DIR``): ``shd`` ``[T<=100, 700]``,
  ``dvsgesture`` ``[20, 2, 32, 32]``, ``cifar10dvs`` ``[10, 2, 48, 48]``, ``nmnist``
  ``[T~30, 2, 34, 34]``;
* procedural (generated offline from a seed in seconds, cached): ``randman``
  ``[50, 100]`` (spike-timing task) and ``moving_shapes`` ``[20, 2, 32, 32]`` (DVS-like
  direction of motion).

Example:
    >>> from stllr.data import get_loaders
    >>> train, test, info = get_loaders("randman", "data", batch_size=64, val_batch_size=250)
    >>> frames, labels = next(iter(train))  # [64, 50, 100] float32, [64] int64
"""

from ._cache import default_data_path
from .api import DATASETS, dataset_options, get_dataset, get_loaders
from .moving_shapes import MOVING_SHAPES_DEFAULTS, generate_moving_shapes
from .procedural import EventFramesDataset
from .randman import RANDMAN_DEFAULTS, generate_randman
from .real import DatasetNotFoundError, TonicFrames, download_command, is_available, require_dataset
from .transforms import pad_collate

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "EventFramesDataset",
    "MOVING_SHAPES_DEFAULTS",
    "RANDMAN_DEFAULTS",
    "TonicFrames",
    "dataset_options",
    "default_data_path",
    "download_command",
    "generate_moving_shapes",
    "generate_randman",
    "get_dataset",
    "get_loaders",
    "is_available",
    "pad_collate",
    "require_dataset",
]
