"""Atomic on-disk caching shared by the real and the procedural datasets.

Every cache file is written with :func:`stllr._io.atomic_open` (a hidden temporary file in the same
folder, moved into place with ``os.replace``, the mode ``open`` would give), so an interrupted
write (Ctrl-C, a killed worker, a full disk) never leaves a half-written file under the final
name. Readers only ever open final names, so a leftover temporary file is ignored (and a later
write simply creates a fresh one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from stllr._io import atomic_open

#: Bump when a change to the preprocessing / generation code changes cached content.
CACHE_VERSION = 1

#: Environment variable naming the default data folder.
DATA_ENV_VAR = "STLLR_DATA"


def default_data_path() -> Path:
    """Folder used when ``data_path`` is None: ``$STLLR_DATA`` or ``~/.cache/stllr/data``."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/stllr/data").expanduser()


def cache_key(params: dict[str, Any], length: int = 16) -> str:
    """Stable hex digest of a JSON-able parameter dict (key order does not matter)."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **params}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot hash parameter of type {type(value).__name__}: {value!r}")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically."""
    with atomic_open(path, "wb", hidden=True, open_permissions=True) as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (uncompressed: fast to write and to read)."""
    with atomic_open(path, "wb", hidden=True, open_permissions=True) as f:
        np.savez(f, **arrays)


class SampleCache:
    """One ``.npy`` file per sample index in ``folder``, written atomically.

    Parameters:
        folder: cache folder; should already encode every parameter that changes the content
                (see :func:`cache_key`).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, index: int) -> Path:
        return self.folder / f"{int(index)}.npy"

    def load(self, index: int) -> np.ndarray | None:
        """The cached array, or None when absent or unreadable (then it is rebuilt)."""
        p = self.path(index)
        try:
            return np.load(p, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            # Unreadable (e.g. a disk error truncated it): forget it and rebuild.
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            return None

    def save(self, index: int, array: np.ndarray) -> None:
        atomic_save_npy(self.path(index), array)

    def __repr__(self) -> str:
        return f"SampleCache({str(self.folder)!r})"
