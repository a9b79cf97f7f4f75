"""download_dataset and `pcd data download` against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcd_core.data import DatasetError, download_dataset, load_dataset
from pcd_core.data.cli import data_app


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (ephemeral port); yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cifar100_archive(tmp_path, http_dir, cifar_writer) -> tuple[str, str]:
    """A small cifar-100-python tar.gz on the server; returns (url, md5)."""
    served, base = http_dir
    src = cifar_writer(tmp_path / "src", "cifar100", n_train=30, n_test=10)
    archive = served / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-100-python")
    return f"{base}/cifar-100-python.tar.gz", hashlib.md5(archive.read_bytes()).hexdigest()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_verifies_extracts_and_loads(tmp_path, cifar100_archive):
    url, md5 = cifar100_archive
    root = tmp_path / "data"
    folder = download_dataset("cifar100", root, url=url, md5=md5, progress=False)
    assert folder == root / "cifar-100-python"
    assert _leftovers(root) == ["cifar-100-python", "cifar-100-python.tar.gz"]
    train = load_dataset("cifar100", "train", root)
    assert train.images.shape == (30, 3, 32, 32) and train.num_classes == 100
    # second call: folder exists and loads -> no download (a dead URL proves it)
    again = download_dataset("cifar100", root, url="http://127.0.0.1:9/none", md5=md5)
    assert again == folder


def test_download_wrong_md5_leaves_nothing(tmp_path, cifar100_archive):
    url, md5 = cifar100_archive
    root = tmp_path / "data"
    wrong = "0" * 32
    with pytest.raises(DatasetError) as err:
        download_dataset("cifar100", root, url=url, md5=wrong, progress=True)
    msg = str(err.value)
    assert wrong in msg and md5 in msg and "md5 mismatch" in msg
    assert _leftovers(root) == []


def test_download_http_error_leaves_nothing(tmp_path, http_dir):
    _, base = http_dir
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="HTTP 404"):
        download_dataset("cifar10", root, url=f"{base}/missing.tar.gz", progress=False)
    assert _leftovers(root) == []


def test_download_rejects_escaping_members(tmp_path, http_dir):
    served, base = http_dir
    archive = served / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="escape"):
        download_dataset("cifar10", root, url=f"{base}/evil.tar.gz", md5=md5, progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    assert not any(p.name.startswith(".extract-") for p in root.iterdir())


def test_download_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="cifar100"):
        download_dataset("mnist", tmp_path)


def test_cli_download_ok_and_error(tmp_path, cifar100_archive):
    url, md5 = cifar100_archive
    runner = CliRunner()
    root = tmp_path / "cli"
    ok = runner.invoke(
        data_app, ["download", "cifar100", "--data-root", str(root), "--url", url, "--md5", md5]
    )
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip().endswith("cifar-100-python")

    bad_root = tmp_path / "cli-bad"
    bad = runner.invoke(
        data_app,
        ["download", "cifar100", "--data-root", str(bad_root), "--url", url, "--md5", "f" * 32],
    )
    assert bad.exit_code == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: md5 mismatch")
    assert "Traceback" not in bad.output
    assert _leftovers(bad_root) == []

    unknown = runner.invoke(data_app, ["download", "imagenet", "--data-root", str(root)])
    assert unknown.exit_code == 1 and len(unknown.stderr.strip().splitlines()) == 1

    info = runner.invoke(
        data_app, ["info", "cifar100", "--data-root", str(root), "--split", "test"]
    )
    assert info.exit_code == 0 and "10 images" in info.stdout
    missing = runner.invoke(data_app, ["info", "cifar10", "--data-root", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "pcd data download cifar10" in missing.stderr


def test_download_corrupt_archive_and_wrong_layout(tmp_path, http_dir):
    served, base = http_dir
    (served / "junk.tar.gz").write_bytes(b"not a tarball")
    md5 = hashlib.md5(b"not a tarball").hexdigest()
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="corrupt or unreadable archive"):
        download_dataset("cifar100", root, url=f"{base}/junk.tar.gz", md5=md5, progress=False)
    other = served / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        info = tarfile.TarInfo("something-else/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    md5 = hashlib.md5(other.read_bytes()).hexdigest()
    with pytest.raises(DatasetError, match="no top-level 'cifar-100-python/'"):
        download_dataset("cifar100", root, url=f"{base}/other.tar.gz", md5=md5, progress=False)
    assert "cifar-100-python" not in _leftovers(root)


def test_download_reuses_verified_archive(tmp_path, cifar100_archive):
    url, md5 = cifar100_archive
    root = tmp_path / "data"
    folder = download_dataset("cifar100", root, url=url, md5=md5, progress=False)
    shutil.rmtree(folder)  # archive stays; re-extracted without a download
    assert download_dataset("cifar100", root, url="http://127.0.0.1:9/x", md5=md5) == folder
    assert len(load_dataset("cifar100", "test", root)) == 10
