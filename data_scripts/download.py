#!/usr/bin/env python
"""Download a recorded dataset (both splits) into DATA_PATH and extract it where tonic looks.

    python data_scripts/download.py {shd,dvsgesture,cifar10dvs,nmnist} --data-path DIR [--dry-run]

The files land where stllr's loaders (and tonic) look for them: ``DIR/SHD``,
``DIR/DVSGesture``, ``DIR/CIFAR10DVS``, ``DIR/NMNIST``. A split that tonic already finds on
disk is skipped. ``--dry-run`` only prints what would be fetched (URL, archive, target folder)
and whether it is already present; it needs no network.

Each archive is downloaded to a temporary file in its target folder, checked against tonic's md5
and only then renamed (atomically) to its final name; a failed or interrupted download removes
its temporary file, so a half-written archive is never left where tonic would trust it. The
archive is extracted (as tonic extracts it) into a temporary folder whose entries are then
renamed into place. Without
network the script stops with one line on stderr naming the URL(s), the folder and the file
names to place there by hand; run it again afterwards to verify and extract them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

try:
    from stllr.data import real
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from stllr.data import real

PROG = "download.py"
CHUNK = 1 << 20


class DownloadError(Exception):
    """A failure reported as one line on stderr (exit status 1)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have tonic's md5 (the temporary file is removed)."""


def splits(name: str) -> list[bool]:
    return [True, False] if real.REAL_DATASETS[name].has_splits else [True]


def split_label(name: str, train: bool) -> str:
    return ("train" if train else "test") if real.REAL_DATASETS[name].has_splits else "train+test"


def describe(name: str, data_path: str, train: bool) -> str:
    obj = real.probe(name, data_path, train)
    state = "present" if present(name, data_path, train) else "missing"
    return (
        f"{name} [{split_label(name, train)}]: {state}\n"
        f"    url:     {obj.url}\n"
        f"    archive: {Path(obj.location_on_system, obj.filename)}\n"
        f"    folder:  {Path(obj.location_on_system, obj.folder_name)}"
    )


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _reason(exc: BaseException) -> str:
    """A short, one-line description of a network or file error."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {_one_line(exc.reason)}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return _one_line(exc.reason) or "URLError"
        exc = exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror)
    return _one_line(exc) or type(exc).__name__


def manual_steps(name: str, data_path: str) -> str:
    """How to place the missing archives by hand (one sentence)."""
    objs = [real.probe(name, data_path, train) for train in splits(name)]
    missing = [
        o for o, train in zip(objs, splits(name)) if not present(name, data_path, train)
    ] or objs
    folder = Path(missing[0].location_on_system)
    files = " and ".join(f"{o.url} as {o.filename}" for o in missing)
    return (
        f"to install it by hand, download {files} into {folder}{os.sep}, then run this command again "
        f"(it checks the md5 and extracts)"
    )


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p; returns the folders it created (deepest last)."""
    created = []
    for p in reversed([folder, *folder.parents]):
        if not p.exists():
            created.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for p in reversed(folders):
        with contextlib.suppress(OSError):
            p.rmdir()  # only succeeds when empty


def fetch(url: str, dest: Path, md5: str | None, timeout: float) -> None:
    """Download ``url`` to ``dest``: a temporary file in the same folder, md5-checked, renamed into
    place on success; removed (and any folder this call created, if empty) on any failure."""
    created = _make_dirs(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as fh:
            request = urllib.request.Request(url, headers={"User-Agent": "stllr-download"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                from tqdm.auto import tqdm

                with tqdm(
                    total=response.length,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    file=sys.stderr,
                    disable=None,
                ) as bar:  # no bar when stderr is not a terminal
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        fh.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        if md5 is not None and h.hexdigest() != md5:
            raise ChecksumError(
                f"the file from {url} does not have the expected md5 {md5} (got {h.hexdigest()}), "
                f"so it was removed"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _remove_empty(created)
        raise


def download(name: str, data_path: str, train: bool, timeout: float = 60.0) -> None:
    """Fetch (atomically, md5-checked) and extract the archive of one split, unless already present."""
    if present(name, data_path, train):
        print(f"{name} [{split_label(name, train)}]: already present, skipping")
        return
    obj = real.probe(name, data_path, train)
    archive = Path(obj.location_on_system, obj.filename)
    md5 = getattr(obj, "file_md5", None)
    where = f"{name} [{split_label(name, train)}]"
    if archive.is_file() and (md5 is None or _md5(archive) == md5):
        print(f"{where}: using the archive already at {archive}")
    else:
        if archive.is_file():
            print(f"{where}: {archive} does not have the expected md5 {md5}: downloading it again")
        print(f"{where}: downloading {obj.url} to {archive}")
        try:
            fetch(obj.url, archive, md5, timeout)
        except ChecksumError as e:
            raise DownloadError(
                f"{where}: {e}; try again, or {manual_steps(name, data_path)}"
            ) from None
        except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
            raise DownloadError(
                f"cannot download {where} from {obj.url} ({_reason(e)}); no partial file was "
                f"kept; {manual_steps(name, data_path)}"
            ) from None
    try:
        extract(name, obj, archive)
    except Exception as e:
        raise DownloadError(
            f"{where}: extracting {archive} into {archive.parent} failed ({type(e).__name__}: "
            f"{_reason(e)}); the verified archive is kept and nothing half-extracted was left: fix "
            f"the cause (disk space, permissions) and run this command again"
        ) from None
    if not present(name, data_path, train):
        raise DownloadError(
            f"{where}: {archive} was extracted but tonic still does not find the files under "
            f"{archive.parent}"
        )


def extract(name: str, obj, archive: Path) -> None:
    """Extract ``archive`` as tonic would (CIFAR10-DVS: then its per-class archives), but into a
    temporary folder next to it whose top-level entries are then renamed into place: an
    interrupted extraction leaves nothing that tonic's file counts could take for a dataset."""
    from tonic.download_utils import extract_archive

    location = Path(obj.location_on_system)
    print(f"extracting {archive} into {location}")
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=location))
    try:
        extract_archive(str(archive), str(tmp))
        if (
            name == "cifar10dvs"
        ):  # tonic's CIFAR10DVS.__init__: the class archives inside the archive
            for inner in real.REAL_DATASETS[name].cls.data_filename:
                extract_archive(str(tmp / inner), str(tmp))
                (tmp / inner).unlink()  # a copy of what the verified archive holds
        for entry in sorted(tmp.iterdir()):
            target = location / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # an incomplete earlier extraction
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def present(name: str, data_path: str, train: bool) -> bool:
    """tonic's own existence check, plus (SHD) the split's own .h5 file: tonic's SHD check is
    satisfied by the other split's .h5 file once both archives are there."""
    if not real.is_available(name, data_path, train):
        return False
    obj = real.probe(name, data_path, train)
    return name != "shd" or Path(obj.location_on_system, obj.filename[: -len(".zip")]).is_file()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Download a recorded dataset through tonic (both splits; several GB for the DVS sets).",
        epilog="Without network: fetch the URLs that --dry-run prints elsewhere and place the archives, under "
        "their printed names, in the printed folder; running this command again verifies and extracts them.",
    )
    parser.add_argument("name", choices=sorted(real.REAL_DATASETS), help="dataset to fetch")
    parser.add_argument(
        "--data-path",
        required=True,
        help="data folder (the same one passed to stllr.data.get_dataset)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be downloaded, fetch nothing"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds without data before giving up (default 60)",
    )
    args = parser.parse_args(argv)
    data_path = os.path.expanduser(args.data_path)
    try:
        for train in splits(args.name):
            print(describe(args.name, data_path, train))
            if not args.dry_run:
                download(args.name, data_path, train, timeout=args.timeout)
    except DownloadError as e:
        sys.stdout.flush()
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(
            f"{PROG}: interrupted; no partial file was left (run the command again to restart)",
            file=sys.stderr,
        )
        return 130
    if args.dry_run:
        print("(dry run: nothing downloaded)")
    else:
        print(f"{args.name}: ready under {data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
