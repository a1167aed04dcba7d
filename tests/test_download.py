"""data_scripts/download.py without network: one line on stderr (URL, folder, file names to place
by hand), nonzero exit, nothing half-written; a download is md5-checked and renamed into place
atomically. No test here touches the network: urlopen is replaced or pointed at a closed port."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import tonic

from stllr.data import fixtures as fx
from stllr.data import real

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data_scripts" / "download.py"
DATASETS = ["shd", "dvsgesture", "cifar10dvs", "nmnist"]
FOLDERS = {"shd": "SHD", "dvsgesture": "DVSGesture", "cifar10dvs": "CIFAR10DVS", "nmnist": "NMNIST"}

#: a closed port on this machine: any request through it fails at once, offline or not
OFFLINE_ENV = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}


def offline_env() -> dict:
    """The environment of a subprocess whose every HTTP(S) request goes to a closed local port."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(OFFLINE_ENV)
    return env


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("_download_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Response(io.BytesIO):
    """What urlopen returns: ``read(n)``, ``length``; optionally fails after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int | None = None):
        super().__init__(data)
        self.length = len(data)
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().read(n if self.fail_after is None else min(n, self.fail_after - self.tell()))


def _no_network(*args, **kwargs):
    raise urllib.error.URLError(OSError(101, "Network is unreachable"))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("name", DATASETS)
def test_offline_one_line_names_url_folder_and_files(name, script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    data = tmp_path / "datasets"
    assert script.main([name, "--data-path", str(data)]) == 1
    line = _error_line(capsys)
    assert (
        line.startswith("download.py: error: cannot download ") and "Network is unreachable" in line
    )
    folder = data / FOLDERS[name]
    assert f"into {folder}{os.sep}" in line and "run this command again" in line
    for train in script.splits(name):  # every archive: its URL and the name to save it under
        obj = real.probe(name, data, train)
        assert f"{obj.url} as {obj.filename}" in line
    assert "Traceback" not in line and not data.exists()  # the folders it made are removed again


@pytest.mark.parametrize("name", DATASETS)
def test_interrupted_download_leaves_no_partial_file(name, script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: _Response(b"x" * 5000, fail_after=3000)
    )
    data = tmp_path / "datasets"
    (data / "other").mkdir(parents=True)  # a folder the user already had stays
    assert script.main([name, "--data-path", str(data), "--timeout", "5"]) == 1
    line = _error_line(capsys)
    assert "Connection reset by peer" in line and "no partial file was kept" in line
    assert _files(data) == ["other"]


def test_wrong_md5_is_removed_and_said(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: _Response(b"<html>not the archive</html>")
    )
    assert script.main(["shd", "--data-path", str(tmp_path)]) == 1
    line = _error_line(capsys)
    assert (
        "does not have the expected md5" in line
        and "shd_train.h5.zip" in line
        and "by hand" in line
    )
    assert _files(tmp_path) == []


def test_download_is_verified_renamed_and_extracted(script, tmp_path, monkeypatch, capsys):
    """A (fixture) SHD archive served by a fake urlopen: md5-checked, renamed into place, extracted
    by tonic, then found by the loader; the second run fetches nothing."""
    src = tmp_path / "src"
    archives = {}
    for train in (True, False):
        h5 = fx.write_shd(src, train=train, n_samples=4)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.write(h5, h5.name)
        archives[h5.name + ".zip"] = buf.getvalue()
    monkeypatch.setattr(
        tonic.datasets.SHD, "train_md5", hashlib.md5(archives["shd_train.h5.zip"]).hexdigest()
    )
    monkeypatch.setattr(
        tonic.datasets.SHD, "test_md5", hashlib.md5(archives["shd_test.h5.zip"]).hexdigest()
    )
    seen = []

    def serve(request, timeout=None):
        url = request.full_url
        seen.append(url)
        name = url.rsplit("/", 1)[-1]
        assert not (
            tmp_path / "data" / "SHD" / name
        ).exists()  # nothing under the final name until verified
        return _Response(archives[name])

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    data = tmp_path / "data"
    assert script.main(["shd", "--data-path", str(data)]) == 0
    assert len(seen) == 2 and "shd: ready under" in capsys.readouterr().out
    assert sorted(_files(data / "SHD")) == [
        "shd_test.h5",
        "shd_test.h5.zip",
        "shd_train.h5",
        "shd_train.h5.zip",
    ]
    assert real.is_available("shd", data, True) and real.is_available("shd", data, False)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert script.main(["shd", "--data-path", str(data)]) == 0  # present: no network needed


def test_archive_placed_by_hand_is_used_offline(script, tmp_path, monkeypatch, capsys):
    """What the offline message says to do works: put the archive in the folder, run again."""
    h5 = fx.write_shd(tmp_path / "src", train=True, n_samples=3)
    data = tmp_path / "data"
    (data / "SHD").mkdir(parents=True)
    with zipfile.ZipFile(data / "SHD" / "shd_train.h5.zip", "w") as z:
        z.write(h5, h5.name)
    md5 = hashlib.md5((data / "SHD" / "shd_train.h5.zip").read_bytes()).hexdigest()
    monkeypatch.setattr(tonic.datasets.SHD, "train_md5", md5)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert script.main(["shd", "--data-path", str(data)]) == 1  # the test split is still missing
    out, err = capsys.readouterr()
    assert (
        "shd [train]: using the archive already at" in out
        and (data / "SHD" / "shd_train.h5").is_file()
    )
    assert (
        len(err.strip().splitlines()) == 1
        and "shd_test.h5.zip" in err
        and "shd_train.h5.zip as" not in err
    )


def test_command_line_offline_through_a_closed_port(tmp_path):
    """The script as a user runs it, with every request sent to a closed local port."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "shd", "--data-path", str(tmp_path / "d")],
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "download.py: error: cannot download shd [train] from https://"
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "d").exists()


def _cifar10dvs_archive(per_class: int) -> bytes:
    """CIFAR10DVS.zip as published: one zip per class, each holding ``<class>/*.aedat4``."""
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as z:
        for cls in tonic.datasets.CIFAR10DVS.data_filename:
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as zi:
                for i in range(per_class):
                    zi.writestr(f"{cls[:-4]}/cifar10_{cls[:-4]}_{i}.aedat4", b"")
            z.writestr(cls, inner.getvalue())
    return outer.getvalue()


def test_cifar10dvs_nested_archives_extracted_like_tonic(script, tmp_path, monkeypatch, capsys):
    archive = _cifar10dvs_archive(per_class=100)  # tonic wants >= 1000 .aedat4 files
    monkeypatch.setattr(tonic.datasets.CIFAR10DVS, "file_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(archive))
    assert script.main(["cifar10dvs", "--data-path", str(tmp_path)]) == 0
    root = tmp_path / "CIFAR10DVS"
    assert real.is_available("cifar10dvs", tmp_path)
    assert len(list((root / "airplane").glob("*.aedat4"))) == 100
    assert not [
        p for p in root.iterdir() if p.name.startswith(".")
    ]  # no temporary file or folder left


def test_failed_extraction_leaves_only_the_verified_archive(script, tmp_path, monkeypatch, capsys):
    import tonic.download_utils as du

    archive = _cifar10dvs_archive(per_class=1)
    monkeypatch.setattr(tonic.datasets.CIFAR10DVS, "file_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(archive))
    real_extract = du.extract_archive

    def extract_then_fail(src, dst=None, *a, **k):
        if Path(src).name == "dog.zip":
            raise OSError(28, "No space left on device")
        return real_extract(src, dst, *a, **k)

    monkeypatch.setattr(du, "extract_archive", extract_then_fail)
    assert script.main(["cifar10dvs", "--data-path", str(tmp_path)]) == 1
    line = _error_line(capsys)
    assert "extracting" in line and "No space left on device" in line and "archive is kept" in line
    assert _files(tmp_path) == ["CIFAR10DVS", "CIFAR10DVS/CIFAR10DVS.zip"]
