"""Single entry point: :func:`get_dataset` and :func:`get_loaders`."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from . import moving_shapes as _moving_shapes
from . import randman as _randman
from . import real as _real
from ._cache import default_data_path
from .transforms import pad_collate

__all__ = ["DATASETS", "get_dataset", "get_loaders", "dataset_options"]

_BUILDERS: dict[str, Callable[..., torch.utils.data.Dataset]] = {
    "shd": _real.shd,
    "dvsgesture": _real.dvsgesture,
    "cifar10dvs": _real.cifar10dvs,
    "nmnist": _real.nmnist,
    "randman": _randman.randman,
    "moving_shapes": _moving_shapes.moving_shapes,
}

#: Valid dataset names.
DATASETS: tuple[str, ...] = tuple(_BUILDERS)

_PROCEDURAL_DEFAULTS = {
    "randman": _randman.RANDMAN_DEFAULTS,
    "moving_shapes": _moving_shapes.MOVING_SHAPES_DEFAULTS,
}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in _BUILDERS:
        raise ValueError(f"name must be one of {', '.join(DATASETS)}; got {name!r}")
    return name.lower()


def dataset_options(name: str) -> dict[str, Any]:
    """The options (and their defaults) accepted by ``get_dataset(name, ...)``."""
    name = _check_name(name)
    sig = inspect.signature(_BUILDERS[name])
    opts = {
        k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    opts.update(_PROCEDURAL_DEFAULTS.get(name, {}))
    return opts


def get_dataset(
    name: str, data_path: str | os.PathLike | None = None, train: bool = True, **options: Any
) -> torch.utils.data.Dataset:
    """Dataset ``name`` as a torch Dataset of ``(frames float32 tensor [T, ...], int label)``.

    Parameters:
        name: one of :data:`DATASETS` ("shd", "dvsgesture", "cifar10dvs", "nmnist", "randman",
              "moving_shapes").
        data_path: folder holding the downloaded datasets / the procedural cache
                   (None: ``$STLLR_DATA`` or ``~/.cache/stllr/data``).
        train: training (True) or test split.
        **options: dataset-specific options, see :func:`dataset_options`.

    The returned dataset has ``num_classes``, ``input_shape`` (per time step), ``T`` (nominal
    number of steps), ``sensor_size``, ``classes`` and ``targets`` attributes. Recorded
    datasets that are missing raise :class:`~stllr.data.real.DatasetNotFoundError` (never
    downloaded implicitly).
    """
    name = _check_name(name)
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {train!r}")
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for dataset {name!r}; valid options: {sorted(valid)}"
        )
    path = default_data_path() if data_path is None else data_path
    return _BUILDERS[name](path, train, **options)


def get_loaders(
    name: str,
    data_path: str | os.PathLike | None = None,
    batch_size: int = 64,
    val_batch_size: int | None = None,
    seed: int = 1234,
    num_workers: int = 0,
    **options: Any,
) -> tuple[DataLoader, DataLoader, dict[str, Any]]:
    """Train and test loaders for dataset ``name`` plus a summary dict.

    Batches are ``(frames float32 [B, T, ...], labels int64 [B])``; samples of different length
    are zero-padded at the end to the batch's longest (like ``tonic.collation.PadTensors``,
    batch first). The training loader shuffles with a ``torch.Generator`` seeded with ``seed``
    (the same seed gives the same order, and seeds the workers' augmentation RNG). A procedural
    dataset's own generation ``seed`` option is passed as ``data_seed`` (``seed`` is the shuffle's).

    Returns:
        ``(train_loader, test_loader, info)`` with ``info`` keys ``name``, ``num_classes``,
        ``input_shape`` (per step), ``T`` (nominal steps), ``sensor_size``, ``classes``,
        ``n_train``, ``n_test``.
    """
    name = _check_name(name)
    for key, value in (("batch_size", batch_size), ("num_workers", num_workers)):
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < (1 if key == "batch_size" else 0)
        ):
            raise ValueError(
                f"{key} must be a {'positive' if key == 'batch_size' else 'non-negative'} integer, got {value!r}"
            )
    if val_batch_size is None:
        val_batch_size = batch_size
    if (
        not isinstance(val_batch_size, int)
        or isinstance(val_batch_size, bool)
        or val_batch_size < 1
    ):
        raise ValueError(f"val_batch_size must be a positive integer, got {val_batch_size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if "data_seed" in options:  # the dataset's generation seed (randman, moving_shapes)
        options["seed"] = options.pop("data_seed")
    train_set = get_dataset(name, data_path, True, **options)
    test_set = get_dataset(name, data_path, False, **options)
    generator = torch.Generator()
    generator.manual_seed(seed)
    common = dict(
        collate_fn=pad_collate, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    train_loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, generator=generator, **common
    )
    test_loader = DataLoader(test_set, batch_size=val_batch_size, shuffle=False, **common)
    info = {
        "name": name,
        "num_classes": train_set.num_classes,
        "input_shape": tuple(train_set.input_shape),
        "T": train_set.T,
        "sensor_size": tuple(train_set.sensor_size),
        "classes": list(train_set.classes),
        "n_train": len(train_set),
        "n_test": len(test_set),
    }
    return train_loader, test_loader, info
