"""API latency under load, and submission-to-first-trial time, on loopback.

1. p50/p99 latency of GET /v1/studies/{id} (a finished study with 2 trials in MLflow) and of
   a validate_only POST, each under 50 concurrent clients for 20 s (httpx, asyncio).
2. Time from POST /v1/studies to the first trial running, with a warm local Ray cluster
   (`ray start --head`, reached through PCD_RAY_ADDRESS) and a stored teacher.

    python bench/api_bench.py [--clients 50] [--seconds 20]
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from pcd_core.train import TrainConfig, train
from service.demo import _port, _start, _stop

app = typer.Typer(add_completion=False)
console = Console()
BODY = {
    "search_space": "pcd-digits",
    "overrides": {
        "budget.trials": 2,
        "budget.max_epochs": 2,
        "scheduler.type": "none",
        "promotion.seeds": 0,
        "teacher": {"checkpoint": "teacher.pt"},
    },
}


async def _load(
    url: str, method: str, path: str, headers: dict, clients: int, seconds: float, **kw
) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            start = time.perf_counter()
            response = await client.request(method, path, headers=headers, **kw)
            latencies.append(time.perf_counter() - start)
            assert response.status_code < 300, response.text

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return latencies


def _row(table: Table, label: str, lat: list[float], seconds: float) -> None:
    lat = sorted(lat)
    table.add_row(
        label,
        str(len(lat)),
        f"{len(lat) / seconds:.0f}",
        f"{statistics.median(lat) * 1e3:.1f}",
        f"{lat[int(0.99 * (len(lat) - 1))] * 1e3:.1f}",
    )


@app.command()
def main(clients: int = typer.Option(50), seconds: float = typer.Option(20.0)) -> None:
    bin_dir = Path(sys.executable).parent
    root = Path(tempfile.mkdtemp(prefix="pcd-api-bench-"))
    token = secrets.token_hex(16)
    headers = {"Authorization": f"Bearer {token}"}
    train(TrainConfig(arch="cnn_small", epochs=3), root / "teachers")  # the stored teacher
    ray_dir = Path(f"/tmp/pcd-bench-ray-{secrets.token_hex(3)}")
    ray_port = _port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    subprocess.run(
        [
            str(bin_dir / "ray"),
            "start",
            "--head",
            "--node-ip-address=127.0.0.2",
            f"--port={ray_port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={ray_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    api_port = _port()
    url = f"http://127.0.0.1:{api_port}"
    env.update(
        PCD_DATABASE_URL=f"sqlite:///{root / 'pcd.db'}",
        PCD_API_TOKENS=f"{token}:rw",
        PCD_STUDIES_DIR=str(root / "studies"),
        PCD_TEACHER_ROOT=str(root / "teachers"),
        PCD_RAY_ADDRESS=f"127.0.0.2:{ray_port}",
    )
    api = None
    try:
        api = _start(
            [str(bin_dir / "pcd"), "serve", "--port", str(api_port), "--log-level", "warning"],
            env,
            root / "api.log",
            f"{url}/healthz",
            "the API",
        )
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            submitted = time.perf_counter()
            study = c.post("/v1/studies", json=BODY).json()
            first_trial = None
            while True:
                s = c.get(f"/v1/studies/{study['id']}").json()
                if first_trial is None and s["trials"]["running"] + s["trials"]["completed"] > 0:
                    first_trial = time.perf_counter() - submitted
                if s["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.2)
            assert s["status"] == "succeeded", s
        get_lat = asyncio.run(
            _load(url, "GET", f"/v1/studies/{study['id']}", headers, clients, seconds)
        )
        post_lat = asyncio.run(
            _load(
                url,
                "POST",
                "/v1/studies",
                headers,
                clients,
                seconds,
                params={"validate_only": "true"},
                json=BODY,
            )
        )
        table = Table(
            title=f"{clients} concurrent clients, {seconds:.0f} s each, loopback, "
            "one uvicorn worker, client and server on the same 2 cores"
        )
        for col in ("request", "requests", "req/s", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right")
        _row(table, "GET /v1/studies/{id}", get_lat, seconds)
        _row(table, "POST validate_only", post_lat, seconds)
        console.print(table)
        console.print(
            f"submission to first trial running (warm local Ray, stored teacher): "
            f"{first_trial:.1f} s"
        )
    finally:
        _stop(api)
        import psutil

        for p in psutil.process_iter(["cmdline"]):
            if any(str(ray_dir) in part for part in (p.info["cmdline"] or [])) or any(
                str(root) in part for part in (p.info["cmdline"] or [])
            ):
                try:
                    p.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ray_dir, ignore_errors=True)


if __name__ == "__main__":
    app()
