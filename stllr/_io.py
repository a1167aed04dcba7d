"""Atomic file writes shared by training, sweeps and the data cache: a reader (or a resumed run)
never sees a half-written file.

:func:`atomic_open` is the one primitive: it writes to a temporary file in the target's folder
(so that ``os.replace`` is atomic) and moves it onto the target only when the block succeeds; on
any exception (Ctrl-C included) the temporary file is removed and the target is left untouched.
Readers only ever open final names, so a temporary file left by a killed process is ignored."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Optional

import torch

__all__ = ["atomic_open", "atomic_torch_save", "atomic_write_text"]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The mode ``open`` gives a new file (0o666 minus the umask; ``mkstemp`` creates 0o600 files).
OPEN_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    fsync: bool = False,
    hidden: bool = False,
    open_permissions: bool = False,
    encoding: Optional[str] = None,
    newline: Optional[str] = None,
) -> Iterator[IO]:
    """``with atomic_open(path) as f: ...``: ``f`` is a temporary file next to ``path`` (its parent
    folder is created), moved onto ``path`` with ``os.replace`` when the block succeeds.

    Args:
        mode, encoding, newline: as :func:`open` (a writing mode).
        fsync: flush and ``os.fsync`` before the move (the data are on disk when ``path`` appears).
        hidden: the temporary name starts with a dot (``.name.XXXX.tmp``; else ``name.XXXX.tmp``).
        open_permissions: give the file the mode ``open`` would (:data:`OPEN_FILE_MODE`) instead of
            ``mkstemp``'s 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}." if hidden else f"{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if open_permissions:
            os.chmod(tmp, OPEN_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: os.PathLike) -> None:
    """torch.save to ``path`` atomically, fsynced (checkpoints: never a half-written file)."""
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(obj, f)


def atomic_write_text(path: os.PathLike, text: str, *, open_permissions: bool = False) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically (``open_permissions``: as
    :func:`atomic_open`)."""
    with atomic_open(
        path, "w", encoding="utf-8", newline="", open_permissions=open_permissions
    ) as f:
        f.write(text)
