"""The command line: the paper's seven commands run as printed (smoke-sized), bad input fails in
one line before any work, eval on our and the reference's checkpoints, the subcommand hook."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stllr import cli
from stllr.cli import train as cli_train
from stllr.data import fixtures
from stllr.training import run as training_run

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

#: appended to every paper command: one epoch, two batches, one trial, tiny batches for the VGGs
SMOKE = "--epochs 1 --max-batches 2 --trials 1 --no-progress"
SMALL_BATCH = "--batch-size 2 --val-batch-size 2"

#: The README's Table 2 commands (python main.py ...), with `stllr train` for `python main.py`.
#: The CIFAR10-DVS S-TLLR one keeps the README's arch name dvscifar10_vgg11_stllr (an alias here);
#: the SHD BPTT one gets the space the README misses before --trials.
PAPER_COMMANDS = {
    "gesture_bptt": "--dataset DVSGesture --arch dvs_vgg_bptt --save-path {save} --data-path {data} --trials 5 "
    "--epochs 300 --batch-size 16 --val-batch-size 16 --feedback-mode BP --print-freq 20 "
    "--delay-ls 5 --scheduler 300 --pooling MAX --training-mode bptt",
    "gesture_stllr": "--dataset DVSGesture --arch dvs_vgg_stllr --data-path {data} --save-path {save} --trials 5 "
    "--epochs 300 --batch-size 16 --val-batch-size 64 --feedback-mode BP --print-freq 200 "
    "--delay-ls 5 --factors-stdp 0.2 0.75 -1 1 --pooling MAX --scheduler 300",
    "cifar10dvs_bptt": "--dataset CIFAR10DVS --arch dvscifar10_vgg_bptt --save-path {save} --data-path {data} "
    "--trials 5 --epochs 300 --lr 0.001 --batch-size 48 --val-batch-size 128 --print-freq 20 "
    "--scheduler 300 --pooling AVG --activation GradSigmoid --training-mode bptt",
    "cifar10dvs_stllr": "--dataset CIFAR10DVS --arch dvscifar10_vgg11_stllr --save-path {save} --data-path {data} "
    "--trials 5 --epochs 300 --lr 0.001 --batch-size 48 --val-batch-size 128 --feedback-mode BP "
    "--print-freq 20 --delay-ls 5 --scheduler 300 --factors-stdp 0.2 0.5 -1 1 --pooling AVG "
    "--activation STLLRConv2dSigmoid",
    "shd_bptt": "--arch bptt_shd_net --dataset SHD --batch-size 128 --val-batch-size 128 --save-path {save} "
    "--print-freq 10 --data-path {data} --trials 5 --epochs 200 --lr 0.0002 --training-mode bptt",
    "shd_stllr_bp": "--arch stllr_shd_net --dataset SHD --batch-size 128 --val-batch-size 128 --factors-stdp 0.5 1 1 1 "
    "--delay-ls 90 --save-path {save} --print-freq 10 --data-path {data} --trials 5 --epochs 200 "
    "--lr 0.0002",
    "shd_stllr_dfa": "--arch stllr_shd_net --dataset SHD --batch-size 128 --val-batch-size 128 "
    "--factors-stdp 0.5 1 1 1 --delay-ls 90 --save-path {save} --print-freq 10 --data-path {data} "
    "--trials 5 --epochs 200 --lr 0.0002 --label-encoding one-hot --feedback-mode DFA",
}


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    """Offline fixtures in the real on-disk formats (SHD, DVS Gesture, CIFAR10-DVS)."""
    root = tmp_path_factory.mktemp("datasets")
    for train in (True, False):
        fixtures.write_shd(root, train=train, n_samples=6)
        fixtures.write_dvsgesture(
            root, train=train, duration_ms=(1600.0, 1700.0), events_per_recording=300
        )
    fixtures.write_cifar10dvs(root, events_per_sample=60)
    return root


def _run(argv):
    return cli.main([str(a) for a in argv])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAPER_COMMANDS))
def test_paper_command_runs_as_printed(name, real_data, tmp_path):
    save = tmp_path / name
    command = PAPER_COMMANDS[name].format(save=save, data=real_data)
    extra = SMOKE + ("" if name.startswith("shd") else " " + SMALL_BATCH)
    rc = _run(["train"] + shlex.split(command) + shlex.split(extra))
    assert rc == 0
    results = json.loads((save / "results.json").read_text())
    cfg = results["config"]
    printed = shlex.split(command)
    assert cfg["arch"] == printed[printed.index("--arch") + 1].replace("vgg11", "vgg")
    if "--factors-stdp" in printed:
        i = printed.index("--factors-stdp")
        assert cfg["factors"] == [float(f) for f in printed[i + 1 : i + 5]]
    assert cfg["training_mode"] == ("bptt" if "bptt" in name else "stllr")
    assert cfg["feedback_mode"] == ("DFA" if name.endswith("dfa") else "BP")
    assert cfg["scheduler"] == (300 if "--scheduler" in printed else 0)
    (trial,) = results["trials"]
    (epoch,) = trial["epochs"]
    assert 0.0 <= epoch["test_acc"] <= 100.0 and epoch["train_loss"] > 0
    assert (save / "trial_1_last.pth.tar").is_file() and (
        save / "trial_1_model_best.pth.tar"
    ).is_file()
    assert (save / "metrics.csv").is_file() and (save / "log.log").read_text().strip()


BAD_INPUTS = [
    (["--arch", "vgg_nope", "--dataset", "randman"], "unknown arch 'vgg_nope'"),
    (["--arch", "randman_rsnn_stllr", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (
        [
            "--arch",
            "randman_rsnn_stllr",
            "--dataset",
            "randman",
            "--factors-stdp",
            "0.2",
            "0.75",
            "-1",
        ],
        "--factors-stdp: expected 4 numbers",
    ),
    (
        ["--arch", "randman_rsnn_stllr", "--dataset", "randman", "--feedback-mode", "DFA"],
        "needs one-hot labels: add --label-encoding one-hot",
    ),
    (["--arch", "stllr_shd_net", "--dataset", "SHD"], "--data-path is required for dataset shd"),
    (["--arch", "randman_rsnn_bptt", "--dataset", "randman"], "use --training-mode bptt"),
    (
        ["--arch", "randman_rsnn_stllr", "--dataset", "randman", "--training-mode", "bptt"],
        "--training-mode bptt needs a BPTT arch",
    ),
    (
        ["--arch", "dvs_vgg_stllr", "--dataset", "randman"],
        "arch dvs_vgg_stllr expects (channels, height, width)",
    ),
    (
        ["--arch", "randman_rsnn_stllr", "--dataset", "randman", "--optimizer", "LBFGS"],
        "--optimizer",
    ),
    (
        ["--arch", "randman_rsnn_stllr", "--dataset", "randman", "--epochs", "many"],
        "argument --epochs",
    ),
    (["--arch", "randman_rsnn_stllr", "--dataset", "randman", "--delay-ls", "0"], "--delay-ls"),
    (
        ["--arch", "randman_rsnn_stllr", "--dataset", "randman", "--feedback-mode", "LocalLoss"],
        "not supported",
    ),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_one_line_nonzero_before_any_work(argv, message, capsys, monkeypatch, tmp_path):
    def no_data(*a, **k):
        raise AssertionError("data loading started despite bad input")

    monkeypatch.setattr(training_run, "_load_data", no_data)
    start = time.perf_counter()
    try:
        rc = _run(["train", "--save-path", tmp_path / "run"] + argv)
    except SystemExit as e:  # argparse errors
        rc = e.code
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0] and lines[0].startswith("stllr train: error:")
    assert elapsed < 5.0
    assert not (tmp_path / "run").exists()  # nothing written


def test_missing_real_dataset_names_the_download_command(capsys, tmp_path):
    rc = _run(
        [
            "train",
            "--arch",
            "stllr_shd_net",
            "--dataset",
            "SHD",
            "--data-path",
            tmp_path,
            "--save-path",
            tmp_path / "run",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "python data_scripts/download.py shd --data-path" in err[0]


def _python_m_stllr(*args, cwd=REPO):
    """``python -m stllr ARGS`` in a fresh process on one thread, run in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "stllr", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=120,
    )


def test_module_entry_point_exit_codes(tmp_path):
    bad = _python_m_stllr("train", "--arch", "nope", "--dataset", "randman")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "stllr train: error: unknown arch 'nope'; expected one of: "
        + ", ".join(__import__("stllr.models").models.list_models())
    ]
    ok = _python_m_stllr("models", "--json")
    assert ok.returncode == 0
    assert {r["arch"] for r in json.loads(ok.stdout)} >= {
        "stllr_shd_net",
        "dvs_vgg_bptt",
        "randman_rsnn_stllr",
    }


def test_parser_structure():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"train", "eval", "models", "memory"} == set(sub.choices)
    args = parser.parse_args(["train"])
    # the reference's defaults
    assert (
        args.arch,
        args.dataset,
        args.optimizer,
        args.loss,
        args.lr,
        args.batch_size,
        args.val_batch_size,
        args.seed,
        args.training_mode,
        args.feedback_mode,
        args.delay_ls,
        args.scheduler,
        args.print_freq,
        args.factors,
        args.pooling,
        args.weight_decay,
        args.label_encoding,
        args.activation,
        args.trials,
        args.epochs,
    ) == (
        "dvs_vgg_stllr",
        "DVSGesture",
        "Adam",
        "CE",
        1e-3,
        16,
        5,
        1234,
        "stllr",
        "BP",
        5,
        0,
        200,
        [0.2, 0.75, -1.0, 1.0],
        "MAX",
        0.0,
        "class",
        "LinearSpike",
        1,
        100,
    )
    assert args.func is cli_train.cmd_train


RANDMAN_SMALL = ["-o", "n_train_per_class=4", "-o", "n_test_per_class=2", "-o", "n_steps=12"]


def _train_randman(data, save, options: str, pretrained=None):
    """``stllr train`` of randman_rsnn_stllr on the small randman (RANDMAN_SMALL) with ``options``
    (and ``--pretrained-model pretrained``); the exit status."""
    argv = ["train", "--arch", "randman_rsnn_stllr", "--dataset", "randman", "--data-path", data]
    argv += ["--save-path", save] + shlex.split(options)
    argv += ["--pretrained-model", pretrained] if pretrained is not None else []
    return _run(argv + ["--no-progress"] + RANDMAN_SMALL)


def test_train_then_eval_checkpoint_and_reference_format(tmp_path, capsys):
    data = tmp_path / "data"
    save = tmp_path / "run"
    rc = _train_randman(
        data, save, "--epochs 2 --batch-size 8 --val-batch-size 7 --delay-ls 6 --lr 0.01"
    )
    assert rc == 0
    results = json.loads((save / "results.json").read_text())
    last = results["trials"][0]["epochs"][-1]
    capsys.readouterr()
    assert (
        _run(["eval", "--checkpoint", save / "trial_1_last.pth.tar", "--data-path", data, "--json"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["arch"] == "randman_rsnn_stllr" and res["samples"] == 20
    assert res["test_acc"] == pytest.approx(last["test_acc"]) and res["test_loss"] == pytest.approx(
        last["test_loss"]
    )
    # the same weights in the reference's format: {'state_dict': {'module.<key>': ...}, 'best_acc1': tensor, ...}
    ckpt = torch.load(save / "trial_1_last.pth.tar", weights_only=True)
    ref = {
        "epoch": 2,
        "best_acc1": torch.tensor(12.5),
        "state_dict": {
            "module." + k: v for k, v in ckpt["state_dict"].items() if not k.endswith(".feedback")
        },
        "optimizer": ckpt["optimizer"],
    }
    torch.save(ref, tmp_path / "model_best.pth.tar")
    assert (
        _run(
            ["eval", "--checkpoint", tmp_path / "model_best.pth.tar", "--data-path", data, "--json"]
        )
        == 2
    )
    assert "does not name its arch; pass --arch" in capsys.readouterr().err
    assert (
        _run(
            [
                "eval",
                "--checkpoint",
                tmp_path / "model_best.pth.tar",
                "--arch",
                "randman_rsnn_stllr",
                "--dataset",
                "randman",
                "--data-path",
                data,
                "--json",
            ]
            + RANDMAN_SMALL
        )
        == 0
    )
    res2 = json.loads(capsys.readouterr().out)
    assert res2["test_acc"] == pytest.approx(last["test_acc"])
    # and as --pretrained-model of a new run: the first epoch starts from these weights
    rc = _train_randman(
        data,
        tmp_path / "ft",
        "--epochs 1 --batch-size 8 --val-batch-size 7 --lr 1e-12",
        pretrained=tmp_path / "model_best.pth.tar",
    )
    assert rc == 0
    ft = json.loads((tmp_path / "ft" / "results.json").read_text())["trials"][0]["epochs"][0]
    assert ft["test_acc"] == pytest.approx(last["test_acc"])
    # wrong arch for the checkpoint: one line, non-zero
    capsys.readouterr()
    assert (
        _run(
            [
                "eval",
                "--checkpoint",
                tmp_path / "model_best.pth.tar",
                "--arch",
                "stllr_shd_net",
                "--dataset",
                "randman",
                "--data-path",
                data,
            ]
            + RANDMAN_SMALL
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the model expects" in err[0]


def test_eval_missing_checkpoint(capsys, tmp_path):
    assert _run(["eval", "--checkpoint", tmp_path / "nope.pth.tar"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_eval_and_pretrained_model_refuse_non_checkpoints_in_one_line(
    capsys, tmp_path, non_checkpoints
):
    for path, why in non_checkpoints.items():
        assert _run(["eval", "--checkpoint", path]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"stllr eval: error: {path} is not an stllr checkpoint ({why}"
        ), err
        assert "a dict with a 'state_dict' of tensors" in err[0] and "weights_only" not in err[0]
    (pickled,) = [p for p in non_checkpoints if p.name == "object.pth.tar"]
    rc = _train_randman(
        tmp_path / "data",
        tmp_path / "ft",
        "--epochs 1 --max-batches 1 --batch-size 8",
        pretrained=pickled,
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"stllr train: error: --pretrained-model {pickled} is not an "
        "stllr checkpoint (it holds Python objects other than tensors"
    )
    assert "weights_only" not in err[-1]


def test_eval_non_checkpoint_from_the_shell_no_traceback(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    proc = _python_m_stllr("eval", "--checkpoint", tmp_path / "notes.txt", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"stllr eval: error: {tmp_path / 'notes.txt'} is not an stllr checkpoint (it is not a torch.save file); "
        "expected a torch.save file holding a dict with a 'state_dict' of tensors, as stllr train writes "
        "(trial_K_last.pth.tar, trial_K_model_best.pth.tar) or the reference's *.pth.tar"
    ]
