#!/usr/bin/env python
"""Download a recorded dataset (both splits) through tonic into DATA_PATH.

    python data_scripts/download.py {shd,dvsgesture,cifar10dvs,nmnist} --data-path DIR [--dry-run]

The files land where stllr's loaders (and tonic) look for them: ``DIR/SHD``,
``DIR/DVSGesture``, ``DIR/CIFAR10DVS``, ``DIR/NMNIST``. A split that tonic already finds on
disk is skipped. ``--dry-run`` only prints what would be fetched (URL, archive, target folder)
and whether it is already present; it needs no network.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    from stllr.data import real
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from stllr.data import real


def splits(name: str) -> list[bool]:
    return [True, False] if real.REAL_DATASETS[name].has_splits else [True]


def describe(name: str, data_path: str, train: bool) -> str:
    obj = real.probe(name, data_path, train)
    split = ("train" if train else "test") if real.REAL_DATASETS[name].has_splits else "train+test"
    state = "present" if obj._check_exists() else "missing"
    return (
        f"{name} [{split}]: {state}\n"
        f"    url:     {obj.url}\n"
        f"    archive: {Path(obj.location_on_system, obj.filename)}\n"
        f"    folder:  {Path(obj.location_on_system, obj.folder_name)}"
    )


def download(name: str, data_path: str, train: bool) -> None:
    """Lets tonic download, verify (md5) and extract the archive(s) of one split."""
    if real.is_available(name, data_path, train):
        print(f"{name}: already present, skipping")
        return
    cls = real.REAL_DATASETS[name].cls
    if real.REAL_DATASETS[name].has_splits:
        cls(data_path, train=train)
    else:
        cls(data_path)
    if not real.is_available(name, data_path, train):
        raise SystemExit(f"{name}: download finished but tonic still does not find the files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Download a recorded dataset through tonic (both splits; several GB for the DVS sets).",
    )
    parser.add_argument("name", choices=sorted(real.REAL_DATASETS), help="dataset to fetch")
    parser.add_argument("--data-path", required=True, help="data folder (the same one passed to stllr.data.get_dataset)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be downloaded, fetch nothing")
    args = parser.parse_args(argv)
    data_path = os.path.expanduser(args.data_path)
    for train in splits(args.name):
        print(describe(args.name, data_path, train))
        if not args.dry_run:
            download(args.name, data_path, train)
    if args.dry_run:
        print("(dry run: nothing downloaded)")
    else:
        print(f"{args.name}: ready under {data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
