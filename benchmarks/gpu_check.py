"""The CUDA paths, checked on a GPU in one run (a few minutes): correctness, training, memory, speed.

CI has no GPU, so everything here that needs one is run by hand on a GPU machine:

    python benchmarks/gpu_check.py [--out DIR] [--quick]

1. correctness: the S-TLLR update (``stllr.studies.gradient_alignment.stllr_update``) and the exact BPTT gradient
   of small recurrent and conv models, float64, on CUDA vs the CPU (max relative difference; spikes
   are thresholds, so only float64 keeps both devices on the same spike trains);
2. training: ``stllr train --device``-equivalent runs (the CLI picks CUDA when present) on the
   procedural randman task for S-TLLR (BP, DFA) and BPTT, and the SHD model on a real-format SHD
   fixture (written by ``stllr.data.fixtures``), with a resume from the last checkpoint;
3. memory: the paper's Fig. 3 (``benchmarks/bench_memory.py --device cuda``, batch 512): allocator
   peak of one training sequence vs T for S-TLLR and BPTT;
4. speed: training time per step of the SHD net (batch 128, T = 100, 90 learning steps) and
   VGG-9 (batch 16, T = 20, 5 learning steps), S-TLLR vs its BPTT twin, on the GPU;
5. full_paths: the notebooks' ``FULL = True`` code paths (06, 07, 08: paper settings, the real SHD
   file format) for one epoch on a small SHD fixture, on the GPU.

Prints a readable report and writes ``gpu_check.json`` (and the logs) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from stllr.training.loop import DEFAULT_CHUNK

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stllr.models.registry import build_model  # noqa: E402
from stllr.studies import gradient_alignment as A  # noqa: E402
from stllr.studies import memory_and_compute as E  # noqa: E402


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(
        (a.double().cpu() - b.double().cpu()).abs().max() / b.double().abs().max().clamp_min(1e-300)
    )


def check_correctness(device) -> list:
    rows = []
    cases = [
        ("randman_rsnn_stllr", (100,), 10, 30, 20),
        ("shapes_cnn_stllr", (2, 32, 32), 4, 12, 6),
    ]
    for arch, shape, classes, T, window in cases:
        torch.manual_seed(0)
        model = build_model(
            arch,
            num_classes=classes,
            input_shape=shape,
            factors=[0.5, 0.8, -1.0, 1.0],
            psi="sigmoid",
        ).double()
        model.train()
        for m in model.modules():  # no dropout: one mask on each device would differ
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        g = torch.Generator().manual_seed(1)
        x = (torch.rand((T, 8) + shape, generator=g) < 0.2).double()
        y = torch.randint(0, classes, (8,), generator=g)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        cpu = A.stllr_update(model, x, y, window, names=names)
        model_gpu = model.to(device)
        gpu = A.stllr_update(model_gpu, x.to(device), y.to(device), window, names=names)
        worst = max(_rel(gpu[n], cpu[n]) for n in names)
        rows.append(
            {
                "check": f"{arch} S-TLLR update",
                "max_rel_diff": worst,
                "params": len(names),
                "grad_norm": float(sum(cpu[n].norm() ** 2 for n in names) ** 0.5),
            }
        )
        twin = A.bptt_twin(model.cpu())
        tnames = [n for n, p in twin.named_parameters() if p.requires_grad]
        bc = A.bptt_gradients(twin, x, y, [window], names=tnames)[window]
        bg = A.bptt_gradients(twin.to(device), x.to(device), y.to(device), [window], names=tnames)[
            window
        ]
        rows.append(
            {
                "check": f"{arch} BPTT twin gradient",
                "max_rel_diff": max(_rel(bg[n], bc[n]) for n in tnames),
                "params": len(tnames),
            }
        )
    return rows


def _cli(args, log: Path, env=None) -> dict:
    cmd = [sys.executable, "-m", "stllr"] + args
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    log.write_text("$ " + " ".join(cmd) + "\n" + proc.stdout + "\n--- stderr\n" + proc.stderr)
    return {
        "cmd": " ".join(args),
        "rc": proc.returncode,
        "seconds": time.perf_counter() - t,
        "tail": (proc.stdout + proc.stderr).strip().splitlines()[-3:],
    }


def check_training(out: Path, quick: bool) -> list:
    rows = []
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    )
    data = Path(tempfile.mkdtemp(prefix="stllr-gpu-data-"))
    epochs = "3" if quick else "10"
    common = [
        "--dataset",
        "randman",
        "--data-path",
        str(data),
        "--epochs",
        epochs,
        "--batch-size",
        "32",
        "--val-batch-size",
        "250",
        "--lr",
        "2e-3",
        "--activation",
        "sigmoid",
        "--delay-ls",
        "45",
        "--factors-stdp",
        "0.5",
        "1",
        "1",
        "1",
        "--no-progress",
    ]
    for name, extra in [
        ("stllr_bp", ["--arch", "randman_rsnn_stllr"]),
        (
            "stllr_dfa",
            [
                "--arch",
                "randman_rsnn_stllr",
                "--feedback-mode",
                "DFA",
                "--label-encoding",
                "one-hot",
                "--model-option",
                "rate_reg=0.3",
            ],
        ),
        ("bptt", ["--arch", "randman_rsnn_bptt", "--training-mode", "bptt"]),
    ]:
        save = out / f"train_{name}"
        r = _cli(
            ["train", *extra, *common, "--save-path", str(save)], out / f"train_{name}.log", env
        )
        rows.append({"run": name, **r})
    # SHD net on a real-format SHD fixture, then one more epoch resumed from the checkpoint
    from stllr.data import fixtures

    shd = Path(tempfile.mkdtemp(prefix="stllr-gpu-shd-"))
    for train in (True, False):
        fixtures.write_shd(shd, train=train, seed=0)
    base = [
        "train",
        "--arch",
        "stllr_shd_net",
        "--dataset",
        "SHD",
        "--data-path",
        str(shd),
        "--batch-size",
        "16",
        "--val-batch-size",
        "16",
        "--lr",
        "2e-4",
        "--delay-ls",
        "90",
        "--factors-stdp",
        "0.5",
        "1",
        "1",
        "1",
        "--max-batches",
        "4",
        "--no-progress",
        "--save-path",
        str(out / "train_shd"),
    ]
    rows.append(
        {"run": "shd_fixture", **_cli(base + ["--epochs", "1"], out / "train_shd.log", env)}
    )
    rows.append(
        {
            "run": "shd_fixture_resume",
            **_cli(base + ["--epochs", "2", "--resume"], out / "train_shd_resume.log", env),
        }
    )
    return rows


def check_full_paths(device) -> list:
    """The notebooks' FULL code paths (paper settings, real SHD format) for one epoch on the device, on a
    small SHD fixture: notebook 07 (factor sweep), 08 (methods and the BPTT window control, two worker
    processes sharing the device), 06 (training while recording the signal angles)."""
    from stllr.data import fixtures
    from stllr.studies import accuracy_vs_bptt as S
    from stllr.studies import factor_choices as FC
    from stllr.studies import learning_signals as LS
    from stllr.studies import sweeps

    shd = Path(tempfile.mkdtemp(prefix="stllr-gpu-full-"))
    for train in (True, False):
        fixtures.write_shd(shd, train=train, n_samples=64, seed=0)
    rows = []
    s = FC.sweep_settings(True, shd, device=str(device), epochs=1)
    methods = [s.groups["dfa"][2], s.groups["lambda_pre"][0]]
    sw = sweeps.run_trials(
        methods,
        s.data,
        trials=1,
        epochs=1,
        lr=s.lr,
        workers=1,
        device=str(device),
        progress=False,
    )
    rows += [
        {"notebook": "07", "key": k, "test_acc": v[0].final_test_acc, "params": v[0].num_parameters}
        for k, v in sw.items()
    ]
    c = S.study_config(True, shd, epochs=1)
    methods = c.methods + S.bptt_window_methods(c, [10])
    sw = sweeps.run_trials(
        methods,
        c.data,
        trials=1,
        epochs=1,
        lr=c.lr,
        workers=2,
        device=str(device),
        progress=False,
    )
    rows += [{"notebook": "08", "key": k, "test_acc": v[0].final_test_acc} for k, v in sw.items()]
    cfg = LS.signal_config(True, epochs=1, data_path=shd)
    run = LS.train_recording(
        cfg.methods[1],
        *LS.load_data(cfg),
        epochs=1,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        device=str(device),
        record_every=1,
    )
    rows.append(
        {
            "notebook": "06",
            "key": run.method.key,
            "test_acc": run.history[-1]["test_acc"],
            "angle_feedback_first": run.records[0]["angle_feedback"],
            "records": len(run.records),
        }
    )
    return rows


def check_memory(out: Path, quick: bool, device) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_memory.py"),
        "--device",
        str(device),
        "--json",
    ]
    if quick:
        cmd += ["--T", "10", "50", "100"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out / "bench_memory.log").write_text(proc.stdout + "\n--- stderr\n" + proc.stderr)
    try:
        return {"rc": proc.returncode, "result": json.loads(proc.stdout)}
    except ValueError:
        return {"rc": proc.returncode, "tail": (proc.stdout + proc.stderr)[-2000:]}


def check_speed(device) -> list:
    cases = []
    for s_arch, b_arch, shape, classes, T, window, batch in [
        ("stllr_shd_net", "bptt_shd_net", (700,), 20, 100, 90, 128),
        ("dvs_vgg_stllr", "dvs_vgg_bptt", None, None, 20, 5, 16),
    ]:  # VGG-9: the registry's Gesture shapes
        torch.manual_seed(0)
        s = (
            build_model(s_arch, num_classes=classes, input_shape=shape, factors=[0.5, 1, 1, 1])
            .to(device)
            .train()
        )
        b = build_model(b_arch, num_classes=classes, input_shape=shape).to(device).train()
        cases += [
            (f"{s_arch} S-TLLR per step", s, "stllr", T, window, batch, 0),
            (f"{s_arch} S-TLLR deferred", s, "stllr", T, window, batch, DEFAULT_CHUNK),
            (f"{b_arch} BPTT", b, "bptt", T, window, batch),
        ]
    return E.time_per_step(cases, repeats=5, threads=None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/gpu_check", help="folder for gpu_check.json and logs")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and T values")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["correctness", "training", "memory", "speed", "full_paths"],
        default=None,
    )
    ap.add_argument(
        "--device", default="cuda", help=argparse.SUPPRESS
    )  # cpu: dry run of this script itself
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: CUDA is not available on this machine (torch.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "no GPU (dry run)"
    report = {"torch": torch.__version__, "gpu": gpu, "python": sys.version.split()[0]}
    print(f"== {report['gpu']}, torch {report['torch']}, python {report['python']}", flush=True)
    steps = args.only or ["correctness", "speed", "memory", "training", "full_paths"]
    for step in steps:
        t = time.perf_counter()
        print(f"== {step}", flush=True)
        try:
            if step == "correctness":
                report[step] = check_correctness(device)
                for r in report[step]:
                    print(
                        f"   {r['check']:<40} max rel diff CUDA vs CPU (float64): {r['max_rel_diff']:.2e}"
                        + (f" (|grad| {r['grad_norm']:.3g})" if "grad_norm" in r else "")
                    )
            elif step == "training":
                report[step] = check_training(out, args.quick)
                for r in report[step]:
                    print(
                        f"   {r['run']:<20} rc={r['rc']} {r['seconds']:.1f}s | {' / '.join(r['tail'][-2:])[:400]}"
                    )
            elif step == "full_paths":
                report[step] = check_full_paths(device)
                for r in report[step]:
                    print(
                        "   "
                        + ", ".join(
                            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in r.items()
                        )
                    )
            elif step == "memory":
                report[step] = check_memory(out, args.quick, device)
                print("   " + json.dumps(report[step])[:3000])
            elif step == "speed":
                report[step] = check_speed(device)
                for r in report[step]:
                    print(
                        f"   {r['label']:<28} T={r['T']:<4} window={r['window']:<3} batch={r['batch']:<4} "
                        f"{r['seconds'] * 1e3:8.1f} ms/sequence {r['ms_per_step']:7.3f} ms/step"
                    )
        except Exception as e:  # report and go on with the other checks
            import traceback

            report[step] = {"error": repr(e), "traceback": traceback.format_exc()}
            print(traceback.format_exc(), flush=True)
        print(f"   ({time.perf_counter() - t:.1f} s)", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
