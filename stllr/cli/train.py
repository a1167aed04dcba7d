"""``stllr train``, ``stllr eval`` and ``stllr models``: parsers and commands."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_train_subcommand", "add_eval_subcommand"]


def _scheduler_value(text: str):
    key = text.strip().lower()
    if key in ("off", "none", "cosine"):
        return key
    try:
        return int(key)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer T_max (0 = off), 'cosine' or 'off', got {text!r}"
        ) from None


def add_train_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model with S-TLLR or BPTT (the reference's main.py flags)",
        description="Train a model with S-TLLR or BPTT. Flags and defaults follow the reference "
        "implementation's main.py, so the paper's commands run as printed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("reference flags")
    g.add_argument("--arch", default="dvs_vgg_stllr", help="SNN architecture (see `stllr models`)")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is available")
    g.add_argument(
        "--dataset",
        default="DVSGesture",
        help="SHD, DVSGesture, CIFAR10DVS, NMNIST, or the procedural randman, moving_shapes",
    )
    g.add_argument(
        "--save-path",
        default="./experiments/default",
        help="folder for checkpoints, results.json, metrics.csv and log.log",
    )
    g.add_argument(
        "--data-path",
        default=None,
        help="datasets folder (required for the recorded datasets; procedural ones are cached "
        "there, default $STLLR_DATA or ~/.cache/stllr/data)",
    )
    g.add_argument("--trials", type=int, default=1, help="repetitions; trial K uses seed + K - 1")
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument(
        "--optimizer", default="Adam", help="SGD, NAG, Adam, RMSprop (or RMSProp), Rprop (or RProp)"
    )
    g.add_argument(
        "--loss", default="CE", help="CE, MSE (logits vs one-hot) or BCE (with logits, one-hot)"
    )
    g.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    g.add_argument(
        "--batch-size", type=int, default=16, help="training batch (global, with several processes)"
    )
    g.add_argument("--val-batch-size", type=int, default=5, help="test batch")
    g.add_argument(
        "--label-encoding", default="class", help="class or one-hot (DFA and sDFA need one-hot)"
    )
    g.add_argument(
        "--activation",
        default="LinearSpike",
        help="secondary activation psi / surrogate: LinearSpike (layer default), GradSigmoid, "
        "STLLRConv2dSigmoid, ..., or rational, triangle, sigmoid, fast_sigmoid",
    )
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument(
        "--pretrained-model", default=None, help="initial weights (ours or a reference .pth.tar)"
    )
    g.add_argument(
        "--training-mode",
        default="stllr",
        help="stllr, stllr_online, bptt, or bptt_window (BPTT of the per-step losses of the last --delay-ls steps)",
    )
    g.add_argument("--feedback-mode", default="BP", help="learning signal: BP, DFA or sDFA")
    g.add_argument(
        "--delay-ls",
        type=int,
        default=5,
        help="number of final time steps with a learning signal (T - T_l)",
    )
    g.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="stllr mode: learning steps per deferred weight-gradient GEMM (stllr.deferred_updates; "
        "default 16; 0 = a GEMM and the standardisation backward at every step)",
    )
    g.add_argument(
        "--scheduler",
        type=_scheduler_value,
        default=0,
        help="cosine learning-rate schedule: T_max in epochs (0 = off), or 'cosine' for T_max = epochs",
    )
    g.add_argument("--print-freq", type=int, default=200, help="log every N batches")
    g.add_argument(
        "--factors-stdp",
        dest="factors",
        nargs="+",
        type=float,
        default=[0.2, 0.75, -1.0, 1.0],
        metavar="F",
        help="lambda_post lambda_pre alpha_post alpha_pre",
    )
    g.add_argument("--pooling", default="MAX", help="MAX or AVG (conv models)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    a = p.add_argument_group("additions")
    a.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the checkpoints in --save-path",
    )
    a.add_argument(
        "--max-batches", type=int, default=None, help="at most N batches per epoch (smoke runs)"
    )
    a.add_argument(
        "--reference-baseline",
        action="store_true",
        help="BPTT archs: the reference's baseline (SHD leak 15; VGG always AVG pooling) "
        "instead of the matched twin",
    )
    a.add_argument("--only-trial", type=int, default=None, metavar="K", help="run trial K alone")
    a.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    a.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://host:8786; default $STLLR_CLUSTER, unset: this process): each "
        "trial runs as one task on its workers (start them with --nthreads 1), which write the "
        "checkpoints into --save-path, so it must be on a filesystem they share; --resume skips "
        "finished trials (needs pip install 'stllr[cluster]'; not under torchrun)",
    )
    a.add_argument(
        "-o",
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option passed to the dataset (e.g. n_steps=50); repeatable",
    )
    a.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option passed to build_model (e.g. hidden=256); repeatable",
    )
    bar = a.add_mutually_exclusive_group()
    bar.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bars (default: bars when stderr is a terminal)",
    )
    bar.add_argument(
        "--progress", dest="progress", action="store_true", help="always show progress bars"
    )
    p.set_defaults(func=cmd_train)
    return p


def add_eval_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="test accuracy of a checkpoint",
        description="Evaluate a checkpoint on the test set: ours (trial_K_*.pth.tar, arch and dataset "
        "read from it) or the reference's (*.pth.tar with 'state_dict'; pass --arch and --dataset).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file")
    p.add_argument("--arch", default=None)
    p.add_argument("--dataset", default=None)
    p.add_argument("--data-path", default=None)
    p.add_argument("--val-batch-size", type=int, default=None)
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--cpu", action="store_true")
    p.add_argument(
        "--factors-stdp", dest="factors", nargs="+", type=float, default=None, metavar="F"
    )
    p.add_argument("--feedback-mode", default=None)
    p.add_argument("--pooling", default=None)
    p.add_argument("--activation", default=None)
    p.add_argument("--loss", default=None)
    p.add_argument("--reference-baseline", action="store_true", default=None)
    p.add_argument("-o", "--data-option", action="append", default=None, metavar="KEY=VALUE")
    p.add_argument("--model-option", action="append", default=None, metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=cmd_eval)
    return p


def add_models_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "models",
        help="list the registered architectures",
        description="List the registered architectures (--arch values).",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    return p


# ======================================================================================
# Commands
# ======================================================================================
def config_from_args(args) -> "TrainConfig":  # noqa: F821
    from stllr.training.config import TrainConfig, parse_option_values

    return TrainConfig(
        arch=args.arch,
        dataset=args.dataset,
        data_path=args.data_path,
        save_path=args.save_path,
        trials=args.trials,
        epochs=args.epochs,
        optimizer=args.optimizer,
        loss=args.loss,
        lr=args.lr,
        batch_size=args.batch_size,
        val_batch_size=args.val_batch_size,
        label_encoding=args.label_encoding,
        activation=args.activation,
        seed=args.seed,
        pretrained_model=args.pretrained_model,
        training_mode=args.training_mode,
        feedback_mode=args.feedback_mode,
        delay_ls=args.delay_ls,
        scheduler=args.scheduler,
        print_freq=args.print_freq,
        factors=args.factors,
        pooling=args.pooling,
        weight_decay=args.weight_decay,
        cpu=args.cpu,
        resume=args.resume,
        max_batches=args.max_batches,
        reference_baseline=args.reference_baseline,
        only_trial=args.only_trial,
        progress=args.progress,
        num_workers=args.num_workers,
        chunk=args.chunk,
        data_options=parse_option_values(args.data_option, "--data-option"),
        model_options=parse_option_values(args.model_option, "--model-option"),
        cluster=_cluster_address(args),
    )


def _cluster_address(args):
    """``--cluster``, else ``$STLLR_CLUSTER`` (unset or empty: None, this process)."""
    if getattr(args, "cluster", None) is not None:
        return args.cluster
    from stllr.training.cluster import cluster_from_env

    return cluster_from_env()


def cmd_train(args) -> int:
    from stllr.training.config import validate_config
    from stllr.training.run import train

    cfg = validate_config(config_from_args(args))  # every check before any work
    train(cfg, validate=False, cluster_name="--cluster" if args.cluster else "STLLR_CLUSTER")
    return 0


def cmd_eval(args) -> int:
    from stllr.training.config import parse_option_values
    from stllr.training.run import evaluate_checkpoint

    overrides = {
        "factors": args.factors,
        "feedback_mode": args.feedback_mode,
        "pooling": args.pooling,
        "activation": args.activation,
        "loss": args.loss,
        "reference_baseline": args.reference_baseline,
    }
    if args.data_option is not None:
        overrides["data_options"] = parse_option_values(args.data_option, "--data-option")
    if args.model_option is not None:
        overrides["model_options"] = parse_option_values(args.model_option, "--model-option")
    import os

    if not os.path.isfile(args.checkpoint):
        from stllr.training.config import ConfigError

        raise ConfigError(f"--checkpoint: no such file {args.checkpoint!r}")
    res = evaluate_checkpoint(
        args.checkpoint,
        arch=args.arch,
        dataset=args.dataset,
        data_path=args.data_path,
        val_batch_size=args.val_batch_size,
        max_batches=args.max_batches,
        cpu=args.cpu,
        progress=args.progress,
        overrides=overrides,
    )
    if args.json:
        print(json.dumps(res))
    else:
        print(
            f"{res['arch']} on {res['dataset']}: test accuracy {res['test_acc']:.2f}% "
            f"(loss {res['test_loss']:.4f}, {res['samples']} samples)"
        )
    return 0


def cmd_models(args) -> int:
    from stllr.models.registry import MODELS, list_models

    rows = [
        {
            "arch": a,
            "dataset": MODELS[a].dataset,
            "rule": "S-TLLR" if MODELS[a].is_stllr else "BPTT",
            "classes": MODELS[a].num_classes,
            "input": list(MODELS[a].input_shape),
            "description": MODELS[a].description,
        }
        for a in list_models()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['arch']:<22} {r['rule']:<7} {r['dataset']:<14} {r['description']}")
    return 0
