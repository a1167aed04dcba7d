"""``stllr train``: trials of a :class:`~stllr.training.config.TrainConfig`, with checkpoints that
resume, ``results.json``, ``metrics.csv`` and a log, on one process or many (torchrun)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from stllr._io import atomic_torch_save, atomic_write_text
from stllr.analysis.metrics import mean_std
from stllr.models.registry import (
    build_model,
    count_parameters,
    get_model_spec,
    load_reference_weights,
)
from stllr.training import distributed as D
from stllr.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    _rng_state,
    _set_rng_state,
    checkpoint_paths,
    load_checkpoint,
    load_model_weights,
)
from stllr.training.config import (
    _RUN_IDENTITY,
    ConfigError,
    TrainConfig,
    make_loss,
    make_optimizer,
    make_scheduler,
    validate_config,
)
from stllr.training.loop import evaluate, run_epoch, seed_everything

__all__ = ["train", "train_trial", "evaluate_checkpoint"]

log = logging.getLogger("stllr.training")


RESULTS_FILE = "results.json"


METRICS_FILE = "metrics.csv"


LOG_FILE = "log.log"


def _summary(trials: Dict[int, List[Dict[str, Any]]]) -> Dict[str, Any]:
    done = {k: h for k, h in trials.items() if h}
    final = [h[-1]["test_acc"] for h in done.values()]
    best = [max(e["test_acc"] for e in h) for h in done.values()]
    final_mean, final_std = mean_std(final) if final else (None, None)
    best_mean, best_std = mean_std(best) if best else (None, None)
    return {
        "trials_done": len(done),
        "final_test_acc_mean": final_mean,
        "final_test_acc_std": final_std,
        "best_test_acc_mean": best_mean,
        "best_test_acc_std": best_std,
        "final_test_acc": final,
        "best_test_acc": best,
    }


_CSV_FIELDS = (
    "trial",
    "seed",
    "epoch",
    "train_acc",
    "train_loss",
    "test_acc",
    "test_loss",
    "lr",
    "epoch_time",
    "train_time",
    "test_time",
    "peak_memory_mb",
    "memory_kind",
)


def _write_results(
    save: Path, cfg: TrainConfig, meta: Dict[str, Any], trials: Dict[int, List[Dict[str, Any]]]
):
    payload = {
        "config": cfg.to_dict(),
        **meta,
        "trials": [
            {"trial": k, "seed": cfg.seed + k - 1, "epochs": h} for k, h in sorted(trials.items())
        ],
        "summary": _summary(trials),
    }
    atomic_write_text(save / RESULTS_FILE, json.dumps(payload, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for k, h in sorted(trials.items()):
        for e in h:
            w.writerow({"trial": k, "seed": cfg.seed + k - 1, **e})
    atomic_write_text(save / METRICS_FILE, buf.getvalue())


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover
            self.handleError(record)


@contextlib.contextmanager
def _run_logging(save: Path, write_files: bool, console: bool = True):
    logger = logging.getLogger("stllr")
    handlers = []
    fmt = logging.Formatter("%(asctime)s - %(message)s", datefmt="%d-%b-%y %H:%M:%S")
    if write_files:
        fh = logging.FileHandler(save / LOG_FILE, encoding="utf-8")
        fh.setFormatter(fmt)
        handlers.append(fh)
    if console:
        sh = _TqdmHandler()
        sh.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(sh)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield log
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


# ======================================================================================
# Data
# ======================================================================================
@dataclass
class _Data:
    train_set: Any
    test_set: Any
    info: Dict[str, Any]
    collate: Callable
    val_batch_size: int  # per process
    num_workers: int


def _load_data(cfg: TrainConfig, ctx: D.DistContext, train: bool = True) -> _Data:
    """The train and test datasets of ``cfg.dataset`` from :func:`stllr.data.get_dataset` (the loaders
    are built here, with our samplers: :func:`stllr.data.get_loaders` would take the dataset option
    ``seed`` as its shuffling seed, so the datasets are requested directly)."""
    from stllr import data as sdata

    try:
        train_set = (
            sdata.get_dataset(cfg.dataset, cfg.data_path, True, **cfg.data_options)
            if train
            else None
        )
        test_set = sdata.get_dataset(cfg.dataset, cfg.data_path, False, **cfg.data_options)
    except TypeError as e:
        raise ConfigError(f"--data-option: {e}") from None
    ref = test_set
    info = {
        "num_classes": int(ref.num_classes),
        "input_shape": tuple(int(s) for s in ref.input_shape),
        "T": getattr(ref, "T", None),
    }
    return _Data(
        train_set,
        test_set,
        info,
        sdata.pad_collate,
        max(1, math.ceil(cfg.val_batch_size / ctx.world_size)),
        cfg.num_workers,
    )


def _info(info, key, default=None):
    if isinstance(info, dict):
        return info.get(key, default)
    return getattr(info, key, default)


def _make_loader(
    dataset, batch_size: int, sampler, generator: Optional[torch.Generator], collate, num_workers=0
):
    """A DataLoader over ``dataset`` with our sampler (padding collate of stllr.data)."""
    kw = dict(
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
    )
    if num_workers > 0:
        kw["persistent_workers"] = True
    return torch.utils.data.DataLoader(dataset, **kw)


# ======================================================================================
# One trial, a whole run
# ======================================================================================
def _identity(cfg_dict: Dict[str, Any]) -> Dict[str, Any]:
    return {k: cfg_dict.get(k) for k in _RUN_IDENTITY}


def _check_resume_compatible(saved: Dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    a, b = _identity(saved), _identity(cfg.to_dict())
    diffs = [
        k
        for k in _RUN_IDENTITY
        if json.dumps(a[k], sort_keys=True) != json.dumps(b[k], sort_keys=True)
    ]
    if diffs:
        k = diffs[0]
        raise ConfigError(
            f"--resume: {path} was written with {k}={a[k]!r}, this run has {k}={b[k]!r}"
        )


def _build(cfg: TrainConfig, info) -> nn.Module:
    return build_model(
        cfg.arch,
        num_classes=int(_info(info, "num_classes")),
        input_shape=tuple(_info(info, "input_shape")),
        factors=cfg.factors,
        feedback_mode=cfg.feedback_mode,
        psi=cfg.activation,
        pooling=cfg.pooling,
        reference_baseline=cfg.reference_baseline,
        **cfg.model_options,
    )


def train_trial(
    cfg: TrainConfig,
    trial: int,
    data: "_Data",
    ctx: D.DistContext,
    on_epoch: Optional[Callable[[int, List[Dict[str, Any]]], None]] = None,
) -> List[Dict[str, Any]]:
    """Train trial ``trial`` (1-based; seed ``cfg.seed + trial - 1``) for ``cfg.epochs`` epochs and
    return its per-epoch metrics. Writes (rank 0) the trial's last and best checkpoints in
    ``cfg.save_path`` after every epoch; with ``cfg.resume`` continues from the last one."""
    save = Path(cfg.save_path)
    last_path, best_path = checkpoint_paths(save, trial)
    seed = cfg.seed + trial - 1
    device = ctx.device
    seed_everything(seed)
    model = _build(cfg, data.info).to(device)
    if cfg.pretrained_model:
        try:
            missing, unexpected = load_model_weights(model, cfg.pretrained_model)
        except CheckpointError as e:
            raise e.for_option("--pretrained-model") from None
        except ValueError as e:
            raise ConfigError(
                f"--pretrained-model {cfg.pretrained_model}: {str(e).split(': ', 1)[-1]}"
            ) from None
        log.info(
            "loaded %s (missing keys: %d, unexpected keys: %d)",
            cfg.pretrained_model,
            len(missing),
            len(unexpected),
        )
    D.broadcast_module(model, ctx)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.scheduler)
    loss_fn = make_loss(cfg.loss, model.num_classes)
    local_bs = cfg.batch_size // ctx.world_size
    sampler = D.ShardedShuffleSampler(len(data.train_set), ctx.world_size, ctx.rank, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    train_loader = _make_loader(
        data.train_set, local_bs, sampler, generator, data.collate, data.num_workers
    )
    test_sampler = D.EvalShardSampler(len(data.test_set), ctx.world_size, ctx.rank)
    test_loader = _make_loader(
        data.test_set, data.val_batch_size, test_sampler, None, data.collate, data.num_workers
    )

    history: List[Dict[str, Any]] = []
    best_acc = -1.0
    start_epoch = 1
    if cfg.resume and last_path.is_file():
        try:
            ckpt = load_checkpoint(last_path)  # CPU: RNG states must stay CPU tensors
        except CheckpointError as e:
            raise e.for_option("--resume:") from None
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"--resume: {last_path} is not a checkpoint written by stllr train")
        _check_resume_compatible(ckpt["config"], cfg, last_path)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        history = list(ckpt["history"])
        best_acc = float(ckpt["best_acc1"])
        start_epoch = int(ckpt["epoch"]) + 1
        if ctx.is_main:
            _set_rng_state(ckpt["rng"], generator)
        else:  # other ranks: their own deterministic stream for the rest of the run
            seed_everything(seed + 7919 * ctx.rank + 104729 * start_epoch)
        if start_epoch > cfg.epochs:
            log.info(
                "trial %d: already trained for %d epochs (checkpoint %s)",
                trial,
                start_epoch - 1,
                last_path,
            )
        else:
            log.info("trial %d: resuming at epoch %d from %s", trial, start_epoch, last_path)
    elif ctx.enabled and ctx.rank > 0:
        # same initial weights (broadcast above), independent dropout / augmentation per rank
        seed_everything(seed + 7919 * ctx.rank)

    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = run_epoch(
            model,
            train_loader,
            optimizer=optimizer,
            loss_fn=loss_fn,
            mode=cfg.training_mode,
            window=cfg.delay_ls,
            chunk=cfg.chunk,
            device=device,
            max_batches=cfg.max_batches,
            ctx=ctx,
            progress=bool(cfg.progress),
            desc=f"trial {trial} epoch {epoch} train",
            print_freq=cfg.print_freq,
            logger=log,
        )
        te = run_epoch(
            model,
            test_loader,
            optimizer=None,
            loss_fn=loss_fn,
            device=device,
            max_batches=cfg.max_batches,
            ctx=ctx,
            progress=bool(cfg.progress),
            desc=f"trial {trial} epoch {epoch} test",
        )
        if scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch,
            "train_acc": tr["acc"],
            "train_loss": tr["loss"],
            "test_acc": te["acc"],
            "test_loss": te["loss"],
            "lr": lr,
            "train_samples": tr["samples"],
            "test_samples": te["samples"],
            "train_time": tr["time"],
            "test_time": te["time"],
            "epoch_time": tr["time"] + te["time"],
            "peak_memory_mb": max(tr["peak_memory_mb"], te["peak_memory_mb"]),
            "memory_kind": tr["memory_kind"],
        }
        history.append(record)
        is_best = te["acc"] > best_acc
        best_acc = max(best_acc, te["acc"])
        log.info(
            "trial %d epoch %d/%d: train acc %.2f loss %.4f | test acc %.2f loss %.4f | best %.2f | "
            "%.1f s | peak memory %.0f MB (%s)",
            trial,
            epoch,
            cfg.epochs,
            tr["acc"],
            tr["loss"],
            te["acc"],
            te["loss"],
            best_acc,
            record["epoch_time"],
            record["peak_memory_mb"],
            record["memory_kind"],
        )
        if ctx.is_main:
            cfg_dict = cfg.to_dict()
            if is_best:
                atomic_torch_save(
                    {
                        "epoch": epoch,
                        "arch": cfg.arch,
                        "state_dict": model.state_dict(),
                        "best_acc1": best_acc,
                        "optimizer": optimizer.state_dict(),
                        "config": cfg_dict,
                        "format": CHECKPOINT_FORMAT,
                        "version": CHECKPOINT_VERSION,
                        "trial": trial,
                    },
                    best_path,
                )
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "trial": trial,
                    "seed": seed,
                    "epoch": epoch,
                    "arch": cfg.arch,
                    "config": cfg_dict,
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "best_acc1": best_acc,
                    "history": history,
                    "rng": _rng_state(generator),
                },
                last_path,
            )
        if on_epoch is not None:
            on_epoch(trial, history)
    return history


def _trial_checkpoint(cfg: TrainConfig, trial: int) -> Tuple[Path, Optional[Dict[str, Any]]]:
    """``(path, content)`` of ``trial``'s last checkpoint in the save path (content None when there
    is none); an unreadable file is a one-line error naming ``--resume`` / ``--only-trial``."""
    last, _ = checkpoint_paths(cfg.save_path, trial)
    if not last.is_file():
        return last, None
    try:
        return last, load_checkpoint(last)
    except CheckpointError as e:  # read to keep other trials' results (--resume, --only-trial)
        raise e.for_option("--resume:" if cfg.resume else "--only-trial:") from None


def _trial_history_from_checkpoint(cfg: TrainConfig, trial: int) -> Optional[List[Dict[str, Any]]]:
    _, ckpt = _trial_checkpoint(cfg, trial)
    if ckpt is None:
        return None
    return list(ckpt.get("history", [])) if ckpt.get("format") == CHECKPOINT_FORMAT else None


def _selected_trials(
    cfg: TrainConfig, keep_selected: bool
) -> Tuple[List[int], Dict[int, List[Dict[str, Any]]]]:
    """The trials this run trains (all, or ``--only-trial``) and the histories it keeps from the
    checkpoints (``--resume`` or ``--only-trial``): those of the other trials, and with
    ``keep_selected`` (a local ``--resume``) also those of the selected ones."""
    trials = list(range(1, cfg.trials + 1)) if cfg.only_trial is None else [cfg.only_trial]
    histories: Dict[int, List[Dict[str, Any]]] = {}
    if cfg.resume or cfg.only_trial is not None:  # keep what other trials already wrote
        for k in range(1, cfg.trials + 1):
            if k not in trials or keep_selected:
                h = _trial_history_from_checkpoint(cfg, k)
                if h:
                    histories[k] = h
    return trials, histories


def _run_meta(ctx: D.DistContext, info, num_parameters: Optional[int] = None) -> Dict[str, Any]:
    """results.json's description of the run: processes, device, torch, parameters, dataset."""
    return {
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "torch": torch.__version__,
        "num_parameters": num_parameters,
        "dataset_info": {
            "num_classes": _info(info, "num_classes"),
            "input_shape": list(_info(info, "input_shape")),
            "T": _info(info, "T"),
        },
    }


def train(
    cfg: TrainConfig, validate: bool = True, *, cluster_name: str = "--cluster"
) -> Dict[str, Any]:
    """Run ``cfg.trials`` trials (or only ``cfg.only_trial``) of ``cfg.epochs`` epochs.

    Files in ``cfg.save_path`` (rank 0 only): ``results.json`` (config, per-epoch metrics of every
    trial, summary), ``metrics.csv``, ``log.log``, ``trial_K_last.pth.tar`` (everything to resume) and
    ``trial_K_model_best.pth.tar`` (reference format: epoch, state_dict, best_acc1, optimizer).
    Launched by torchrun with several processes, trains data-parallel (``--batch-size`` is the
    global batch). Returns the content of results.json.

    With ``cfg.cluster`` (a Dask scheduler address) each trial is one task on a worker of that
    cluster, trained there exactly as ``--only-trial K`` would, writing its checkpoints (and its
    lines of ``log.log``) into ``cfg.save_path``, which must be on a filesystem the workers share;
    this process writes ``results.json`` and ``metrics.csv`` as trials finish. ``cluster_name``:
    how errors name the address's source (``--cluster`` or ``STLLR_CLUSTER``).
    """
    if validate:
        cfg = validate_config(cfg)
    if cfg.cluster is not None:
        if D.is_distributed_env():
            raise ConfigError(
                f"{cluster_name}: each trial runs as one task on a Dask worker; start stllr train "
                f"as one process, not under torchrun (WORLD_SIZE={os.environ.get('WORLD_SIZE')})"
            )
        from stllr.training.cluster import ClusterError

        try:
            return _train_on_cluster(cfg, cluster_name)
        except ClusterError as e:
            raise ConfigError(str(e)) from None
    ctx = D.init_distributed(cpu=cfg.cpu)
    try:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"--batch-size {cfg.batch_size} must be divisible by the number of processes "
                f"({ctx.world_size})"
            )
        if cfg.progress is None:
            cfg = dataclasses.replace(cfg, progress=sys.stderr.isatty())
        save = Path(cfg.save_path)
        if ctx.is_main:
            save.mkdir(parents=True, exist_ok=True)
        D.barrier(ctx)
        with _run_logging(save, write_files=ctx.is_main, console=ctx.is_main):
            return _train_run(cfg, ctx, save)
    finally:
        D.cleanup_distributed(ctx)


def _note_delay_ls(cfg: TrainConfig, data: "_Data") -> None:
    """One line when --delay-ls exceeds the training sequences' T: every step gets a learning signal."""
    if cfg.training_mode == "bptt":  # the loss of the summed logits: delay_ls is not used
        return
    steps = getattr(data.train_set, "T", None) if data.train_set is not None else None
    if steps is None:
        steps = _info(data.info, "T")
    if (
        isinstance(steps, (int, np.integer))
        and not isinstance(steps, bool)
        and cfg.delay_ls > steps
    ):
        log.info(
            "note: --delay-ls %d is larger than T=%d of %s: every time step carries a learning signal "
            "(the same as --delay-ls %d)",
            cfg.delay_ls,
            steps,
            cfg.dataset,
            steps,
        )


def _finish(
    cfg: TrainConfig, meta: Dict[str, Any], histories: Dict[int, List[Dict[str, Any]]]
) -> Dict[str, Any]:
    """The summary line of a finished run and what :func:`train` returns (results.json's content)."""
    summary = _summary(histories)
    if summary["trials_done"]:
        log.info(
            "final test accuracy over %d trial(s): %.2f +- %.2f (best %.2f +- %.2f)",
            summary["trials_done"],
            summary["final_test_acc_mean"],
            summary["final_test_acc_std"],
            summary["best_test_acc_mean"],
            summary["best_test_acc_std"],
        )
    return {
        "config": cfg.to_dict(),
        **meta,
        "trials": [
            {"trial": k, "seed": cfg.seed + k - 1, "epochs": h}
            for k, h in sorted(histories.items())
        ],
        "summary": summary,
    }


def _train_run(cfg: TrainConfig, ctx: D.DistContext, save: Path) -> Dict[str, Any]:
    log.info("stllr train: %s", json.dumps(cfg.to_dict(), sort_keys=True))
    log.info("=> everything will be saved to %s", save)
    if ctx.enabled:
        log.info(
            "data parallel: %d processes (%s), local batch %d",
            ctx.world_size,
            ctx.backend,
            cfg.batch_size // ctx.world_size,
        )
    data = _load_data(cfg, ctx)
    info = data.info
    log.info(
        "dataset %s: %d train / %d test samples, input %s, %d classes, T=%s",
        cfg.dataset,
        len(data.train_set),
        len(data.test_set),
        tuple(_info(info, "input_shape")),
        _info(info, "num_classes"),
        _info(info, "T"),
    )
    _note_delay_ls(cfg, data)
    trials, histories = _selected_trials(cfg, keep_selected=cfg.resume)
    meta = _run_meta(ctx, info)

    def on_epoch(trial, history):
        histories[trial] = list(history)
        if ctx.is_main:
            _write_results(save, cfg, meta, histories)

    for k in trials:
        if k == trials[0]:
            probe = _build(cfg, info)
            meta["num_parameters"] = count_parameters(probe)
            log.info("model %s: %.2fM trainable parameters", cfg.arch, meta["num_parameters"] / 1e6)
            log.info("%s", probe)
            del probe
        if len(trials) > 1 or cfg.trials > 1:
            log.info("trial %d of %d (seed %d)", k, cfg.trials, cfg.seed + k - 1)
        histories[k] = train_trial(cfg, k, data, ctx, on_epoch=on_epoch)
    if ctx.is_main:
        _write_results(save, cfg, meta, histories)
    return _finish(cfg, meta, histories)


# ======================================================================================
# Trials on a Dask cluster
# ======================================================================================
def _cluster_trial(cfg_dict: Dict[str, Any], trial: int) -> Dict[str, Any]:
    """One trial of ``stllr train --cluster``, run by a Dask worker (top level, so workers import
    it): :func:`train_trial` as ``--only-trial trial`` would run it, in this process, its
    checkpoints in the save path; returns ``{"trial", "history", "meta"}``."""
    cfg = validate_config(
        dataclasses.replace(TrainConfig(**cfg_dict), cluster=None, only_trial=trial, progress=False)
    )
    use_cuda = torch.cuda.is_available() and not cfg.cpu
    ctx = D.DistContext(device=torch.device("cuda") if use_cuda else torch.device("cpu"))
    save = Path(cfg.save_path)
    save.mkdir(parents=True, exist_ok=True)
    with _run_logging(save, write_files=True, console=False):
        data = _load_data(cfg, ctx)
        log.info(
            "trial %d of %d (seed %d) on a Dask worker (pid %d, %s)",
            trial,
            cfg.trials,
            cfg.seed + trial - 1,
            os.getpid(),
            ctx.device,
        )
        history = train_trial(cfg, trial, data, ctx)
    meta = _run_meta(ctx, data.info, count_parameters(_build(cfg, data.info)))
    return {"trial": trial, "history": history, "meta": meta}


def _finished_history(cfg: TrainConfig, trial: int) -> Optional[List[Dict[str, Any]]]:
    """With ``--resume``: the history of ``trial`` when its checkpoint holds all ``cfg.epochs``
    epochs of this run (a different run's checkpoint is refused as train_trial would), else
    None (the trial still has to run)."""
    last, ckpt = _trial_checkpoint(cfg, trial)
    if ckpt is None:
        return None
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"--resume: {last} is not a checkpoint written by stllr train")
    _check_resume_compatible(ckpt["config"], cfg, last)
    return list(ckpt["history"]) if int(ckpt["epoch"]) >= cfg.epochs else None


def _train_on_cluster(cfg: TrainConfig, name: str) -> Dict[str, Any]:
    from stllr.training.cluster import connect, run_tasks

    save = Path(cfg.save_path)
    save.mkdir(parents=True, exist_ok=True)
    with _run_logging(save, write_files=True, console=True):
        log.info("stllr train: %s", json.dumps(cfg.to_dict(), sort_keys=True))
        log.info("=> everything will be saved to %s", save)
        trials, histories = _selected_trials(cfg, keep_selected=False)
        todo = []
        for k in trials:
            done = _finished_history(cfg, k) if cfg.resume else None
            if done:
                histories[k] = done
                log.info("trial %d: already trained for %d epochs", k, len(done))
            else:
                todo.append(k)
        meta: Dict[str, Any] = {"world_size": 1, "device": None, "torch": None}
        meta.update(num_parameters=None, dataset_info=None, cluster=cfg.cluster)
        previous = save / RESULTS_FILE
        if not todo and previous.is_file():  # nothing to run: the last run's description
            with contextlib.suppress(OSError, ValueError):
                old = json.loads(previous.read_text())
                meta.update({k: old[k] for k in meta if k in old and k != "cluster"})
        if todo:
            worker_cfg = dataclasses.replace(cfg, cluster=None).to_dict()
            with connect(cfg.cluster, name=name) as client:
                log.info(
                    "cluster %s: trials %s run as tasks on its workers (checkpoints written by "
                    "the workers into %s)",
                    cfg.cluster,
                    ", ".join(map(str, todo)),
                    save,
                )
                jobs = {f"trial{k}": (worker_cfg, k) for k in todo}
                labels = {f"trial{k}": f"trial {k}" for k in todo}
                for _, out in run_tasks(client, _cluster_trial, jobs, labels=labels):
                    k = int(out["trial"])
                    histories[k] = out["history"]
                    meta.update({key: v for key, v in out["meta"].items() if key in meta})
                    log.info(
                        "trial %d finished on the cluster: test acc %.2f after %d epochs",
                        k,
                        out["history"][-1]["test_acc"] if out["history"] else float("nan"),
                        len(out["history"]),
                    )
                    _write_results(save, cfg, meta, histories)
        _write_results(save, cfg, meta, histories)
        return _finish(cfg, meta, histories)  # its summary line goes to log.log too


# ======================================================================================
# Evaluation of a checkpoint
# ======================================================================================
def evaluate_checkpoint(
    checkpoint: os.PathLike,
    arch: Optional[str] = None,
    dataset: Optional[str] = None,
    data_path: Optional[str] = None,
    val_batch_size: Optional[int] = None,
    max_batches: Optional[int] = None,
    cpu: bool = False,
    progress: bool = False,
    overrides: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Test accuracy (%) and loss of the weights in ``checkpoint`` (ours or the reference's).

    Our checkpoints carry their config (arch, dataset, model options); a reference checkpoint needs
    ``arch`` and ``dataset``. ``overrides``: other TrainConfig fields (factors, pooling, ...).
    """
    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{checkpoint}: not a checkpoint dict")
    saved = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in saved.items() if k in fields}
    base.update({k: v for k, v in (overrides or {}).items() if v is not None and k in fields})
    if arch is not None:
        base["arch"] = arch
    if dataset is not None:
        base["dataset"] = dataset
    if data_path is not None:
        base["data_path"] = data_path
    if val_batch_size is not None:
        base["val_batch_size"] = val_batch_size
    if "arch" not in base:
        raise ConfigError(f"{checkpoint}: the checkpoint does not name its arch; pass --arch")
    if "dataset" not in base:
        raise ConfigError(f"{checkpoint}: the checkpoint does not name its dataset; pass --dataset")
    try:
        spec = get_model_spec(base["arch"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    base.setdefault("training_mode", "stllr" if spec.is_stllr else "bptt")
    if not spec.is_stllr:
        base["training_mode"] = "bptt"
    base.update(
        cpu=cpu,
        resume=False,
        max_batches=max_batches,
        pretrained_model=None,
        progress=progress,
        trials=1,
        only_trial=None,
    )
    if base.get("feedback_mode", "BP") != "BP" and base.get("label_encoding") != "one-hot":
        base["label_encoding"] = "one-hot"
    cfg = validate_config(TrainConfig(**base))
    ctx = D.DistContext(
        device=torch.device("cuda")
        if (torch.cuda.is_available() and not cpu)
        else torch.device("cpu")
    )
    data = _load_data(cfg, ctx, train=False)
    model = _build(cfg, data.info).to(ctx.device)
    sd = ckpt.get("state_dict", ckpt)
    try:
        missing, unexpected = load_reference_weights(model, sd, strict=False)
    except ValueError as e:
        raise ConfigError(f"{checkpoint}: {str(e).split(': ', 1)[-1]}") from None
    trainable_missing = [k for k in missing if not k.endswith((".feedback", ".factors"))]
    if trainable_missing:
        raise ConfigError(
            f"{checkpoint}: {len(trainable_missing)} model weights missing in the checkpoint "
            f"(e.g. {trainable_missing[0]}); wrong --arch?"
        )
    loss_fn = make_loss(cfg.loss, model.num_classes)
    test_loader = _make_loader(
        data.test_set,
        data.val_batch_size,
        D.EvalShardSampler(len(data.test_set)),
        None,
        data.collate,
        data.num_workers,
    )
    res = evaluate(model, test_loader, loss_fn, ctx.device, max_batches, ctx, progress=progress)
    return {
        "checkpoint": str(checkpoint),
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "test_acc": res["acc"],
        "test_loss": res["loss"],
        "samples": res["samples"],
        "time": res["time"],
        "missing_keys": missing,
        "unexpected_keys": unexpected,
    }
