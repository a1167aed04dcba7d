#!/usr/bin/env python
"""Generate (and cache) a procedural task, then print a summary.

    python data_scripts/make_synthetic.py randman --data-path DIR [--seed 0] [--manifold-dim 2] ...
    python data_scripts/make_synthetic.py moving_shapes --data-path DIR [--n-classes 8] ...

Every generation parameter of the task is a flag (``--help`` lists them with defaults); values
are Python literals (``--speed "(0.5, 1.0)"``). The arrays go to ``DIR/procedural`` and are
reused by ``stllr.data.get_dataset(name, DIR, **same_parameters)``.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

try:
    import stllr.data  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from stllr.data import get_dataset
from stllr.data.moving_shapes import MOVING_SHAPES_DEFAULTS
from stllr.data.randman import RANDMAN_DEFAULTS

TASKS = {"randman": RANDMAN_DEFAULTS, "moving_shapes": MOVING_SHAPES_DEFAULTS}


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate and cache a procedural stllr task.")
    sub = parser.add_subparsers(dest="task", required=True, metavar="{randman,moving_shapes}")
    for task, defaults in TASKS.items():
        p = sub.add_parser(task, help=f"generate the {task} task")
        p.add_argument(
            "--data-path", required=True, help="data folder (cache goes to DATA_PATH/procedural)"
        )
        p.add_argument(
            "--no-cache", action="store_true", help="generate in memory only, write nothing"
        )
        for key, default in defaults.items():
            p.add_argument(
                f"--{key.replace('_', '-')}",
                dest=key,
                type=_literal,
                default=default,
                help=f"(default: {default!r})",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = {k: getattr(args, k) for k in TASKS[args.task]}
    start = time.perf_counter()
    try:
        train = get_dataset(args.task, args.data_path, True, cache=not args.no_cache, **params)
        test = get_dataset(args.task, args.data_path, False, cache=not args.no_cache, **params)
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    frames, _ = train[0]
    n_events = [len(train.events(i)) for i in range(min(len(train), 200))]
    print(f"task:          {args.task}")
    print(f"parameters:    {params}")
    print(f"train / test:  {len(train)} / {len(test)} samples, {train.num_classes} classes")
    print(
        f"class counts:  train {np.bincount(train.targets, minlength=train.num_classes).tolist()}"
    )
    print(f"sensor size:   {train.sensor_size}")
    print(
        f"frames:        {tuple(frames.shape)} float32 per sample (T={train.T}, dt={train.dt_us} us)"
    )
    print(f"events/sample: mean {np.mean(n_events):.1f} (first {len(n_events)} samples)")
    print(f"cache file:    {train.cache_file if train.cache_file else '(not cached)'}")
    print(f"time:          {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
