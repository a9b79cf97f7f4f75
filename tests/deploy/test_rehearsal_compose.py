"""The pieces of `make rehearse-compose` that can be checked without a Docker engine: the
rehearsal's changes to the user's compose file, and the image builds' pip wrapper. The
rehearsal itself (`make rehearse-compose`) builds and runs the stack for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TRANSFORM = DEPLOY / "rehearsal" / "compose_for_rehearsal.py"
PIP_INSTALL = DEPLOY / "pip-install.sh"

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose (make deploy-tools) missing"
)


def _env_file(tmp_path: Path) -> Path:
    text = (ROOT / ".env.example").read_text()
    for key in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "RAY_AUTH_TOKEN"):
        text = text.replace(f"\n{key}=\n", f"\n{key}=secret-{key.lower()}\n")
    text = text.replace("\nPCD_API_TOKENS=\n", "\nPCD_API_TOKENS=tok:rw\n")
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def _compose(env_file: Path, compose_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker-compose", "-p", "rh", "--env-file", str(env_file), "-f", str(compose_file), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        check=False,
    )


@needs_compose
@pytest.mark.parametrize("stand_ins", [False, True])
def test_rehearsal_changes_only_what_this_machine_forces(tmp_path: Path, stand_ins: bool) -> None:
    env_file = _env_file(tmp_path)
    resolved = _compose(env_file, ROOT / "docker-compose.yml", "config")
    assert resolved.returncode == 0, resolved.stderr
    (tmp_path / "config.yml").write_text(resolved.stdout)
    out = tmp_path / "compose.yml"
    cmd = [
        sys.executable,
        str(TRANSFORM),
        str(tmp_path / "config.yml"),
        str(out),
        "--base-image",
        "local/base:1",
        "--deploy-dir",
        str(DEPLOY),
    ]
    proc = subprocess.run(
        cmd + (["--stand-ins"] if stand_ins else []), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "compose change: ray-worker: no GPU reservation" in proc.stdout

    before = yaml.safe_load(resolved.stdout)["services"]
    after = yaml.safe_load(out.read_text())["services"]
    # the user's file: CUDA torch and the GPU reservation
    assert before["ray-worker"]["build"]["args"]["TORCH_INDEX"] == "cu130"
    assert before["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    # the rehearsal's: the CPU variant of the same image, no reservation, local builds
    assert after["ray-worker"]["build"]["args"]["TORCH_INDEX"] == "cpu"
    assert "devices" not in after["ray-worker"]["deploy"]["resources"]["reservations"]
    for name, svc in after.items():
        if "build" in svc:
            assert svc["build"]["network"] == "host", name
    # nothing else moved: commands, environment, ports and healthchecks are the user's
    for name in ("api", "mlflow", "ray-head", "ray-worker", "s3-init"):
        for key in ("command", "environment", "ports", "healthcheck", "volumes"):
            assert after[name].get(key) == before[name].get(key), (name, key)
    if stand_ins:
        assert after["postgres"]["image"].startswith("pcd-rehearsal/")
        assert after["s3"]["image"].startswith("pcd-rehearsal/")
        assert after["postgres"]["environment"] == before["postgres"]["environment"]
    else:
        assert after["postgres"] == before["postgres"] and after["s3"] == before["s3"]
    valid = _compose(env_file, out, "config", "-q")
    assert valid.returncode == 0, valid.stderr


def _pip_install(tmp_path: Path, torch_index: str, wheels: list[str]) -> str:
    """Run deploy/pip-install.sh --torch with a stub `pip` that prints its arguments."""
    extra = tmp_path / "extra"
    (extra / "wheels").mkdir(parents=True)
    for name in wheels:
        (extra / "wheels" / name).write_bytes(b"")
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "pip").write_text('#!/bin/sh\necho "pip $*"\n')
    (stub / "pip").chmod(0o755)
    env = {
        "PATH": f"{stub}:/usr/bin:/bin",
        "PCD_BUILD_EXTRA": str(extra),
        "TORCH_INDEX": torch_index,
    }
    proc = subprocess.run(
        ["sh", str(PIP_INSTALL), "--torch", "2.13.0"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


CPU_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_a_cuda_image_never_takes_a_local_cpu_wheel(tmp_path: Path) -> None:
    out = _pip_install(tmp_path, "cu130", [CPU_WHEEL])
    assert "--index-url https://download.pytorch.org/whl/cu130" in out
    assert CPU_WHEEL not in out


def test_a_cpu_build_takes_the_matching_local_wheel(tmp_path: Path) -> None:
    out = _pip_install(tmp_path, "cpu", [CPU_WHEEL])
    assert f"install --no-deps {tmp_path / 'extra' / 'wheels' / CPU_WHEEL}" in out
    assert "download.pytorch.org" not in out


def test_without_extras_torch_comes_from_pytorchs_index(tmp_path: Path) -> None:
    out = _pip_install(tmp_path, "cu126", [])
    assert out.strip().endswith("--index-url https://download.pytorch.org/whl/cu126")


def test_the_rehearsal_reads_the_run_id_of_the_apis_own_link() -> None:
    """The rehearsal finds the study's parent run from the link the API gives (a query on
    the link once made it ask MLflow for 'ID?workflowType=...')."""
    import importlib.util

    from service.mlflow_links import run_url

    spec = importlib.util.spec_from_file_location("checks", DEPLOY / "rehearsal" / "checks.py")
    assert spec is not None and spec.loader is not None
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    link = run_url("http://127.0.0.1:5000", "3", "caee15fb4b7a4253ad38d10539d76131")
    assert checks.run_id_of_link(link) == "caee15fb4b7a4253ad38d10539d76131"
