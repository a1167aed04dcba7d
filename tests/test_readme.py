"""The README works as printed: its python example trains (weights move, loss is finite), and every
shell command in it runs, smoke-sized, or is exempt with a stated reason."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_updates_weights():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    hidden, readout = namespace["hidden"], namespace["readout"]
    torch.manual_seed(0)
    fresh_hidden = type(hidden)(700, 450, leak=5.0, factors=[0.5, 1.0, 1.0, 1.0])
    # same seed, same construction order -> same initial weights; the optimizer step moved them
    assert not torch.equal(fresh_hidden.weight, hidden.weight)
    assert (
        hidden.weight.grad is None or torch.count_nonzero(hidden.weight.grad) == 0
    )  # zero_grad ran
    assert torch.isfinite(readout.weight).all()


# ============================================================================ the README's commands
#
# Every shell command of the README (```bash blocks, and commands quoted inline such as `make lab`)
# must be in COMMANDS below: either run smoke-sized (the README's own command line with small
# arguments appended: a later flag overrides the README's) or exempt with a stated reason. A
# command the table does not know fails test_readme_commands_are_all_in_the_table, a known one that
# breaks fails test_readme_commands_run_smoke_sized. Nothing here needs the network: every command
# runs with its HTTP(S) requests sent to a closed local port, and the download command is checked
# for its one-line offline error.

REPO = README.parent
BIN = Path(sys.executable).parent  # the venv running the tests: its `stllr`, `python`, `torchrun`
SHELL_FENCES = ("bash", "sh", "shell", "console", "")
INLINE_COMMAND = re.compile(r"(make|stllr|python3?|torchrun|pip|\.venv/bin/\S+)(\s|$)")
OFFLINE = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}


def readme_commands(text: str) -> list[str]:
    """The README's shell commands, in order, each normalised to its words joined by one space
    (continuation lines joined, comments dropped): every line of the shell code blocks, then every
    inline `code` span outside them that starts like a command."""
    commands = []
    for lang, body in re.findall(r"^```(\w*)[ \t]*\n(.*?)^```", text, flags=re.S | re.M):
        if lang.lower() not in SHELL_FENCES:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(" ".join(words))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", prose):
        if not INLINE_COMMAND.match(span.strip()):
            continue
        try:
            words = shlex.split(span)
        except ValueError:  # not shell syntax (an unbalanced quote): prose
            continue
        if len(words) > 1:  # one word (`stllr`) names a program, it is not a command line
            commands.append(" ".join(words))
    return list(dict.fromkeys(commands))


@dataclasses.dataclass
class Smoke:
    """How the smoke test treats one README command."""

    extra: str = ""  # appended to the README's command line
    run: Optional[str] = (
        None  # run this instead (a line with "..." or placeholders), same substitutions
    )
    needs: tuple = ()  # COMMANDS keys run first (once)
    setup: Optional[Callable] = None  # setup(ws) before the run
    check: Optional[Callable] = None  # check(proc, ws): asserts about the outcome
    offline_failure: bool = False  # must stop with exit status 1 and one clean line on stderr
    exempt: Optional[str] = None  # not run, for this reason
    verify: Optional[Callable] = None  # exempt commands: a cheap check that they exist (verify(ws))
    documented_in: str = "README.md"


@dataclasses.dataclass
class Workspace:
    root: Path
    env: dict
    done: dict = dataclasses.field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"


def _argv(line: str, ws: Workspace) -> list[str]:
    words = [w.format(ws=ws.root, home=ws.home) for w in shlex.split(line)]
    words = [str(ws.home) + w[1:] if w.startswith("~/") else w for w in words]
    if words[0] in ("stllr", "python", "torchrun"):
        words[0] = str(BIN / words[0]) if words[0] != "python" else sys.executable
    if Path(words[0]).name.startswith("python") and len(words) > 1 and not words[1].startswith("-"):
        words[1] = str(REPO / words[1])  # the README runs scripts from the repository root
    return words


def _shell(
    words: list[str], ws: Workspace, cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        words, cwd=cwd, env=ws.env, capture_output=True, text=True, timeout=timeout
    )


def _make_dry_run(command: str) -> Callable:
    def verify(ws):
        proc = _shell(["make", "-n", *shlex.split(command)[1:]], ws, REPO)
        assert proc.returncode == 0, f"`make -n` of {command!r} failed: {proc.stderr.strip()}"

    return verify


def _make_dry_run_passes(command: str, expected: str) -> Callable:
    """Like :func:`_make_dry_run`, and the recipe it prints contains ``expected``."""

    def verify(ws):
        proc = _shell(["make", "-n", *shlex.split(command)[1:]], ws, REPO)
        assert proc.returncode == 0, f"`make -n` of {command!r} failed: {proc.stderr.strip()}"
        assert expected in proc.stdout, f"`make -n` of {command!r} does not pass {expected!r}"

    return verify


def _cli_has_flag(command: str, flag: str) -> None:
    proc = subprocess.run(
        [str(BIN / "stllr"), command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and flag in proc.stdout, f"`stllr {command} --help` lacks {flag}"


def _results(ws: Workspace, save: str) -> dict:
    import json

    return json.loads((ws.root / save / "results.json").read_text())


def _check_train_rm(proc, ws):
    (trial,) = _results(ws, "runs/rm")["trials"]
    assert [e["epoch"] for e in trial["epochs"]] == [1]
    assert (ws.root / "runs/rm/trial_1_model_best.pth.tar").is_file()


def _check_resume(proc, ws):
    (trial,) = _results(ws, "runs/rm")["trials"]
    assert [e["epoch"] for e in trial["epochs"]] == [1, 2]
    assert "resuming at epoch 2" in proc.stdout + proc.stderr


def _check_offline_download(proc, ws):
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("download.py: error: cannot download shd [train] from https://"), err[
        0
    ]
    assert f"into {ws.home / 'datasets' / 'SHD'}{os.sep}" in err[0] and "shd_test.h5.zip" in err[0]
    assert not (ws.home / "datasets").exists()  # nothing half-written left behind
    # the datasets its comment names ("also: dvsgesture, cifar10dvs, nmnist"), in this process
    import importlib.util
    import urllib.error
    import urllib.request

    spec = importlib.util.spec_from_file_location(
        "_readme_download", REPO / "data_scripts" / "download.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    original = urllib.request.urlopen

    def no_network(*a, **k):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    urllib.request.urlopen = no_network
    try:
        for name in ("dvsgesture", "cifar10dvs", "nmnist"):
            assert script.main([name, "--data-path", str(ws.home / "datasets")]) == 1, name
    finally:
        urllib.request.urlopen = original
    assert not (ws.home / "datasets").exists()


def _shd_by_hand(ws):
    """What a user does after the offline message: the SHD files placed under ~/datasets/SHD
    (here the project's small real-format fixture)."""
    from stllr.data import fixtures

    for train in (True, False):
        fixtures.write_shd(ws.home / "datasets", train=train, n_samples=4)


def _check_train_shd(proc, ws):
    (trial,) = _results(ws, "experiments/default")["trials"]
    assert len(trial["epochs"]) == 1


def _make_bench_recipe(ws) -> str:
    proc = _shell(["make", "-n", "bench"], ws, REPO)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "benchmarks/" in line]
    assert len(lines) == 1 and lines[0].rstrip().endswith("benchmarks/bench_layers.py"), (
        f"`make bench` no longer runs benchmarks/bench_layers.py alone ({proc.stdout!r}): update COMMANDS"
    )
    return lines[0]


RANDMAN_RUN = (
    "stllr train --arch randman_rsnn_stllr --dataset randman --epochs 20 --batch-size 32 "
    "--val-batch-size 250 --factors-stdp 0.5 1 1 1 --delay-ls 45 --lr 2e-3 --activation sigmoid "
    "--save-path runs/rm"
)
RANDMAN_SMALL = (
    "--max-batches 2 --batch-size 8 --val-batch-size 8 -o n_train_per_class=4 -o n_test_per_class=2 "
    "--no-progress"
)

COMMANDS = {
    "make figures": Smoke(
        exempt="runs every notebook through papermill (minutes); `make test` runs the "
        "notebooks under nbval",
        verify=_make_dry_run("make figures"),
    ),
    "make test": Smoke(
        exempt="the test suite this test is part of", verify=_make_dry_run("make test")
    ),
    "make lab": Smoke(
        exempt="starts an interactive JupyterLab server", verify=_make_dry_run("make lab")
    ),
    "make lab PORT=8890": Smoke(
        exempt="starts an interactive JupyterLab server", verify=_make_dry_run("make lab PORT=8890")
    ),
    "make figures FULL=1 DATA=DIR DEVICE=cuda": Smoke(
        exempt="paper scale: the recorded datasets and a GPU",
        verify=_make_dry_run("make figures FULL=1 DATA=DIR"),
    ),
    "make docs": Smoke(
        exempt="tests/test_site.py builds the site with the same function and checks it in Chromium",
        verify=_make_dry_run_passes("make docs", "tools/build_site.py"),
    ),
    "make figures ONLY=01_lif_and_traces": Smoke(
        exempt="runs a notebook through papermill (a minute or more); `make test` runs the notebooks under nbval",
        verify=_make_dry_run("make figures ONLY=01_lif_and_traces"),
    ),
    "stllr train": Smoke(
        exempt="the subcommand named in prose (its flags follow in the sentence); the command "
        "lines above run it",
        verify=lambda ws: (BIN / "stllr").is_file() or pytest.fail(BIN),
    ),
    "make test STLLR_SKIP_BROWSER=1": Smoke(
        exempt="the test suite this test is part of",
        verify=_make_dry_run("make test STLLR_SKIP_BROWSER=1"),
    ),
    "stllr models": Smoke(
        check=lambda proc, ws: (
            ("randman_rsnn_stllr" in proc.stdout and "stllr_shd_net" in proc.stdout)
            or pytest.fail(proc.stdout)
        )
    ),
    RANDMAN_RUN: Smoke(extra="--epochs 1 " + RANDMAN_SMALL, check=_check_train_rm),
    "stllr train ... --resume": Smoke(
        run=RANDMAN_RUN + " --epochs 2 " + RANDMAN_SMALL + " --resume",
        needs=(RANDMAN_RUN,),
        check=_check_resume,
    ),
    "stllr eval --checkpoint runs/rm/trial_1_model_best.pth.tar": Smoke(
        needs=(RANDMAN_RUN,),
        check=lambda proc, ws: (
            "randman_rsnn_stllr on randman: test accuracy" in proc.stdout
            or pytest.fail(proc.stdout)
        ),
    ),
    "stllr memory --arch stllr_shd_net --T 10 25 50 100 200 300": Smoke(
        extra="--T 3 5 --batch-size 2"
    ),
    "python data_scripts/download.py shd --data-path ~/datasets": Smoke(
        offline_failure=True, check=_check_offline_download
    ),
    "stllr train --arch stllr_shd_net --dataset SHD --data-path ~/datasets --epochs 200 --lr 2e-4 --batch-size 128 "
    "--val-batch-size 128 --factors-stdp 0.5 1 1 1 --delay-ls 90": Smoke(
        extra="--epochs 1 --max-batches 1 --batch-size 4 --val-batch-size 4 --no-progress",
        setup=_shd_by_hand,
        check=_check_train_shd,
    ),
    "python data_scripts/make_synthetic.py randman --data-path DIR": Smoke(
        run="python data_scripts/make_synthetic.py randman --data-path {ws}/synthetic --n-units 12 --n-classes 3 "
        "--n-train-per-class 4 --n-test-per-class 2",
        check=lambda proc, ws: "train / test:" in proc.stdout or pytest.fail(proc.stdout),
    ),
    "torchrun --nproc-per-node N -m stllr train ...": Smoke(
        exempt="two gloo processes; tests/test_distributed.py runs `stllr train` under torchrun with "
        "--nproc-per-node 2 and compares it bit for bit with one process",
        verify=lambda ws: (BIN / "torchrun").is_file() or pytest.fail(f"no torchrun in {BIN}"),
    ),
    "stllr train ... --trials 5 --cluster tcp://HOST:8786": Smoke(
        exempt="needs a running Dask scheduler; tests/test_sweeps_cluster.py runs `stllr train "
        "--cluster` on a local cluster of 2 workers and compares it with the local run",
        verify=lambda ws: _cli_has_flag("train", "--cluster"),
    ),
    "dask scheduler --port 8786": Smoke(
        exempt="starts a long-running Dask scheduler; tests/test_sweeps_cluster.py uses a local cluster",
        verify=lambda ws: (BIN / "dask").is_file() or pytest.fail(f"no dask in {BIN}"),
    ),
    "dask worker tcp://HOST:8786 --nthreads 1 --nworkers 4": Smoke(
        exempt="starts long-running Dask workers; tests/test_sweeps_cluster.py uses a local cluster",
        verify=lambda ws: (BIN / "dask").is_file() or pytest.fail(f"no dask in {BIN}"),
    ),
    "make figures FULL=1 DATA=DIR DEVICE=cuda ONLY=07_factor_choices CLUSTER=tcp://HOST:8786": Smoke(
        exempt="paper scale on a Dask cluster: the recorded datasets, a cluster and GPUs",
        verify=_make_dry_run_passes(
            "make figures FULL=1 DATA=DIR ONLY=07_factor_choices CLUSTER=tcp://HOST:8786",
            "--cluster tcp://HOST:8786",
        ),
    ),
    # not in README.md: benchmarks/README.md's `make bench`, known here in case the README quotes it
    "make bench": Smoke(
        run="{bench} --quick",
        documented_in="benchmarks/README.md",
        check=lambda proc, ws: "same gradients" in proc.stdout or pytest.fail(proc.stdout),
    ),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(
        OFFLINE,
        HOME=str(root / "home"),
        STLLR_DATA=str(root / "data"),
        OMP_NUM_THREADS="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return Workspace(root, env)


def _run_command(command: str, ws: Workspace) -> None:
    """Run a COMMANDS entry (its prerequisites first, each once) and assert its outcome."""
    if command in ws.done:
        assert ws.done[command], f"{command!r} failed earlier"
        return
    smoke = COMMANDS[command]
    ws.done[command] = False
    for need in smoke.needs:
        _run_command(need, ws)
    if smoke.exempt:
        if smoke.verify:
            smoke.verify(ws)
        ws.done[command] = True
        return
    if smoke.setup:
        smoke.setup(ws)
    if command == "make bench":
        line = smoke.run.format(bench=_make_bench_recipe(ws))
        proc = subprocess.run(
            line, shell=True, cwd=REPO, env=ws.env, capture_output=True, text=True, timeout=300
        )
    else:
        line = smoke.run if smoke.run is not None else f"{command} {smoke.extra}"
        proc = _shell(_argv(line, ws), ws, ws.root)
    where = f"README command {command!r} (smoke-run as {line!r})"
    if smoke.offline_failure:
        assert proc.returncode == 1, (
            f"{where}: exit status {proc.returncode}, expected 1\n{proc.stderr[-3000:]}"
        )
        assert "Traceback" not in proc.stderr, f"{where}: traceback\n{proc.stderr[-3000:]}"
    else:
        assert proc.returncode == 0, (
            f"{where}: exit status {proc.returncode}\n{proc.stderr[-3000:]}"
        )
    if smoke.check:
        smoke.check(proc, ws)
    ws.done[command] = True


def test_readme_commands_are_all_in_the_table():
    commands = readme_commands(README.read_text())
    assert "stllr models" in commands and "make test" in commands  # the parser finds them
    unknown = [c for c in commands if c not in COMMANDS]
    assert not unknown, (
        "README commands the smoke table does not know (add each to COMMANDS in "
        f"tests/test_readme.py, with small arguments or an exemption): {unknown}"
    )
    stale = [c for c, s in COMMANDS.items() if s.documented_in == "README.md" and c not in commands]
    assert not stale, f"COMMANDS entries no longer in the README (update or remove them): {stale}"
    for c, s in COMMANDS.items():
        if s.documented_in != "README.md":
            assert c in readme_commands((REPO / s.documented_in).read_text()), (c, s.documented_in)
        assert bool(s.exempt) != bool(s.extra or s.run or s.check or s.offline_failure), c


def test_readme_commands_run_smoke_sized(workspace):
    failures = []
    for command in readme_commands(README.read_text()):
        if command not in COMMANDS:
            failures.append(
                f"- {command}\n    not in COMMANDS (see test_readme_commands_are_all_in_the_table)"
            )
            continue
        try:
            _run_command(command, workspace)
        except (AssertionError, pytest.fail.Exception, subprocess.TimeoutExpired) as e:
            failures.append(f"- {command}\n    {str(e).strip()[:3000]}")
    assert not failures, "README commands that fail smoke-sized:\n" + "\n".join(failures)


def test_make_bench_quick(workspace):
    """benchmarks/README.md's `make bench`, via the recipe `make -n bench` prints plus --quick."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    _run_command("make bench", workspace)
