"""The learning-rate sweep of notebook 08 on a wider grid (docs/experiments.md).

    python tools/lr_grid.py [--grid 1e-3 2e-3 5e-3 1e-2 2e-2 5e-2] [--trials 3] [--workers 2]

Every method of the small-task comparison (:func:`stllr.studies.accuracy_vs_bptt.comparison_methods`)
is trained at every rate on the validation split notebook 08 uses (60 of the 300 training samples
held out; the test set is not loaded), and the table of
:func:`stllr.studies.accuracy_vs_bptt.lr_table` is printed, with the rate
:func:`~stllr.studies.accuracy_vs_bptt.choose_lr` picks for each method marked ``<``. The runs are
those of the notebook (same seeds, data and batches), so its three rates give its numbers.
"""

from __future__ import annotations

import argparse
import time

from stllr.studies import accuracy_vs_bptt, sweeps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grid", type=float, nargs="+", default=[1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2]
    )
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache-dir", default=None, help="folder for finished runs (resumes)")
    args = parser.parse_args(argv)
    config = accuracy_vs_bptt.study_config()
    t0 = time.perf_counter()
    sweep = sweeps.run_trials(
        accuracy_vs_bptt.lr_methods(config, grid=args.grid),
        config.data.validation_split(config.options["validation"]),
        trials=args.trials,
        epochs=config.epochs,
        workers=args.workers,
        cache_dir=args.cache_dir,
    )
    print(
        f"final validation accuracy (%), {args.trials} seeds, {config.options['validation']} "
        f"held-out training samples, {config.epochs} epochs; < the rate chosen"
    )
    print(accuracy_vs_bptt.lr_table(accuracy_vs_bptt.lr_rows(sweep)))
    print(f"({len(sweep) * args.trials} runs in {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
