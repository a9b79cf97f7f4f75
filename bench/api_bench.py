"""API latency under load, and submission-to-first-trial time, on loopback.

1. p50/p99 latency of GET /v1/studies/{id} (a finished study with 2 trials in MLflow) and of
   a validate_only POST, each under 50 concurrent clients for 20 s (aiohttp, one asyncio
   loop: a lighter load generator than httpx, which spent more CPU than the server), and
   the server's CPU time per request (psutil), which the shared cores do not distort.
2. Time from POST /v1/studies to the first trial running (its MLflow run exists, as listed by
   GET /v1/studies/{id}/trials), with a warm local Ray cluster (`ray start --head`, reached
   through PCD_RAY_ADDRESS), a local MLflow server (as `make demo`), a stored teacher and the
   API's warm driver; then the driver's own timeline from driver.log.

    python bench/api_bench.py [--clients 50] [--seconds 20]
"""

from __future__ import annotations

import asyncio
import json
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
from service.control.processes import free_port, stop_session
from service.demo import start_api_server, start_mlflow_server
from service.study_files import StudyFolder

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
    import aiohttp

    latencies: list[float] = []
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            start = time.perf_counter()
            async with session.request(method, url + path, headers=headers, **kw) as response:
                body = await response.read()
            latencies.append(time.perf_counter() - start)
            assert response.status < 300, body

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(clients)))
    return latencies


def _row(table: Table, label: str, lat: list[float], seconds: float, cpu_s: float) -> dict:
    lat = sorted(lat)
    row = {
        "requests": len(lat),
        "req_per_s": len(lat) / seconds,
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1e3,
        "server_cpu_ms_per_request": cpu_s / len(lat) * 1e3,
    }
    table.add_row(
        label,
        str(row["requests"]),
        f"{row['req_per_s']:.0f}",
        f"{row['p50_ms']:.1f}",
        f"{row['p99_ms']:.1f}",
        f"{row['server_cpu_ms_per_request']:.2f}",
    )
    return row


def _server_cpu(proc) -> float:
    import psutil

    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


@app.command()
def main(
    clients: int = typer.Option(50),
    seconds: float = typer.Option(20.0),
    out: Path = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    bin_dir = Path(sys.executable).parent
    root = Path(tempfile.mkdtemp(prefix="pcd-api-bench-"))
    token = secrets.token_hex(16)
    headers = {"Authorization": f"Bearer {token}"}
    train(TrainConfig(arch="cnn_small", epochs=3), root / "teachers")  # the stored teacher
    ray_dir = Path(f"/tmp/pcd-bench-ray-{secrets.token_hex(3)}")
    ray_port = free_port()
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
    api_port, mlflow_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    env.update(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        PCD_MLFLOW_TRACKING_URI=mlflow_url,  # as `make demo` runs: a local MLflow server
        PCD_DATABASE_URL=f"sqlite:///{root / 'pcd.db'}",
        PCD_API_TOKENS=f"{token}:rw",
        PCD_STUDIES_DIR=str(root / "studies"),
        PCD_TEACHER_ROOT=str(root / "teachers"),
        PCD_RAY_ADDRESS=f"127.0.0.2:{ray_port}",
    )
    api = mlflow = None
    try:
        mlflow = start_mlflow_server(root, mlflow_port, env)
        api = start_api_server(root, api_port, env)
        time.sleep(15)  # the API's warm driver readies itself, as in a running service
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            submitted = time.perf_counter()
            study = c.post("/v1/studies", json=BODY).json()
            first_trial = None
            while first_trial is None:
                listed = c.get(f"/v1/studies/{study['id']}/trials")
                assert listed.status_code == 200, listed.text
                if listed.json()["total"] > 0:
                    first_trial = time.perf_counter() - submitted
                else:
                    time.sleep(0.1)
            while (s := c.get(f"/v1/studies/{study['id']}").json())["status"] not in (
                "succeeded",
                "failed",
            ):
                time.sleep(0.5)
            assert s["status"] == "succeeded", s
        driver_log = StudyFolder(root / "studies" / study["id"]).driver_log
        timeline = [
            line.strip()
            for line in driver_log.read_text().splitlines()
            if line.startswith("[pcd driver")
        ]
        cpu0 = _server_cpu(api)
        get_lat = asyncio.run(
            _load(url, "GET", f"/v1/studies/{study['id']}", headers, clients, seconds)
        )
        cpu1 = _server_cpu(api)
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
        cpu2 = _server_cpu(api)
        table = Table(
            title=f"{clients} concurrent clients, {seconds:.0f} s each, loopback, "
            "one uvicorn worker, client and server on the same 2 cores"
        )
        for col in ("request", "requests", "req/s", "p50 ms", "p99 ms", "server CPU ms/req"):
            table.add_column(col, justify="right")
        results = {
            "clients": clients,
            "seconds": seconds,
            "get_study": _row(table, "GET /v1/studies/{id}", get_lat, seconds, cpu1 - cpu0),
            "post_validate_only": _row(table, "POST validate_only", post_lat, seconds, cpu2 - cpu1),
            "submission_to_first_trial_s": first_trial,
            "driver_timeline": timeline,
        }
        console.print(table)
        console.print(
            f"submission to first trial running (warm local Ray, stored teacher, warm driver): "
            f"{first_trial:.1f} s"
        )
        console.print("driver timeline:\n  " + "\n  ".join(timeline), markup=False)
        if out is not None:
            out.write_text(json.dumps(results, indent=1))
    finally:
        stop_session(api)
        stop_session(mlflow)
        import psutil

        for p in psutil.process_iter(["cmdline"]):
            if any(str(ray_dir) in part for part in (p.info["cmdline"] or [])) or any(
                str(root) in part for part in (p.info["cmdline"] or [])
            ):
                try:  # Ray's agents rename themselves (ray::...): take the children too
                    for proc in [*p.children(recursive=True), p]:
                        proc.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ray_dir, ignore_errors=True)


if __name__ == "__main__":
    app()
