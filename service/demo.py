"""`make demo`: the whole product on one machine, over REST.

Starts a local MLflow server (UI on 127.0.0.1) and the API (SQLite store, local Ray), submits
the digits PCD study, follows it to the end, prints the leaderboard and the promoted result
and saves a plot, and ends with the MLflow link that opens the study (its experiment, in the
model-training view). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from service.client import PcdClient
from service.control.processes import free_port, start_session, stop_session, wait_http
from service.promotion_view import display_name, promotion_lines
from service.study_files import mlflow_store_uri

console = Console()
ROOT = Path(".demo")


def _start(args: list[str], env: dict[str, str], log: Path, health: str, what: str):
    """``args`` in a session of its own, once ``health`` answers (else SystemExit)."""
    proc = start_session(args, env, log)
    if wait_http(health, 120, proc):
        return proc
    failure = "exited" if proc.poll() is not None else "did not start in 120 s"
    stop_session(proc)  # not left running half-started
    raise SystemExit(f"error: {what} {failure}; see {log}")


def mlflow_server_args(root: Path, port: int, backend: str | None = None) -> list[str]:
    """``mlflow server`` on 127.0.0.1:PORT with one worker (MLflow's default starts 15
    processes), its store (``backend``, else SQLite) and artifacts under ``root``. Run it with
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false."""
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend or mlflow_store_uri(root),
        "--artifacts-destination",
        str(root / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def start_mlflow_server(root: Path, port: int, env: dict[str, str]):
    """A local MLflow tracking server (UI and REST) on 127.0.0.1:PORT, SQLite store and
    artifacts under ``root``."""
    return _start(
        mlflow_server_args(root, port),
        {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        root / "mlflow.log",
        f"http://127.0.0.1:{port}/health",
        "MLflow",
    )


def start_api_server(root: Path, port: int, env: dict[str, str]):
    """``pcd serve`` on 127.0.0.1:PORT, logging to ``root/api.log``; returns once healthy."""
    bin_dir = Path(sys.executable).parent
    return _start(
        [str(bin_dir / "pcd"), "serve", "--port", str(port), "--log-level", "warning"],
        env,
        root / "api.log",
        f"http://127.0.0.1:{port}/healthz",
        "the API",
    )


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir()
    bin_dir = Path(sys.executable).parent
    token = secrets.token_hex(16)
    mlflow_port, api_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PCD_DATABASE_URL": f"sqlite:///{ROOT / 'pcd.db'}",
        "PCD_MLFLOW_TRACKING_URI": mlflow_url,
        "PCD_API_TOKENS": f"{token}:rw",
        "PCD_STUDIES_DIR": str(ROOT / "studies"),
    }
    mlflow = api = None
    try:
        console.print("[bold]starting MLflow[/bold] (UI at " + mlflow_url + ") ...")
        mlflow = start_mlflow_server(ROOT, mlflow_port, env)
        console.print("[bold]starting the API[/bold] at " + api_url + " ...")
        api = start_api_server(ROOT, api_port, env)
        with PcdClient(api_url, token=token) as client:
            study = client.submit({"search_space": "pcd-digits"})
            console.print(f"submitted study {study['id']} over REST; following it ...")
            with console.status("queued") as status:
                final = client.wait(
                    study["id"],
                    on_update=lambda s: status.update(
                        f"{s['status']}: {s['trials']['running']} running, "
                        f"{s['trials']['completed']} completed, {s['trials']['stopped_early']} "
                        f"stopped early, {s['trials']['pending']} pending"
                    ),
                )
            if final["status"] != "succeeded":
                raise SystemExit(f"error: the study {final['status']}: {final['error']}")
            trials = client.trials(study["id"])["items"]
        table = Table(title="leaderboard (val top-1 %, the tuning metric)")
        for col in ("trial", "outcome", "epochs", "val top-1", "config"):
            table.add_column(col)
        for t in trials:
            config = ", ".join(f"{k}={_short(v)}" for k, v in t["config"].items())
            table.add_row(
                t["trial_id"],
                t["outcome"] or "-",
                str(t["epochs"]),
                "-" if t["best"] is None else f"{t['best']:.2f}",
                config,
            )
        console.print(table)
        for line in promotion_lines(final["promotion"], "retrained on train+val"):
            console.print(line)
        plot = _plot(trials, final)
        console.print(f"best config: {final['best']['config']}")
        console.print(f"plot: {plot}")
        _print_mlflow(final["links"], bin_dir, mlflow_port)
    finally:
        stop_session(api)
        stop_session(mlflow)


def _print_mlflow(links: dict[str, str | None], bin_dir: Path, port: int) -> None:
    """The study in MLflow, last: its parent run, and its experiment page (trials nested under
    the study) in the model-training view; how to serve the UI again once the demo stops."""
    console.print(f"MLflow run: {links['mlflow']}", soft_wrap=True)
    console.print(
        "[dim]the demo's MLflow server stops with it; to browse the runs again: "
        f"{bin_dir / 'mlflow'} server --backend-store-uri {mlflow_store_uri(ROOT)} "
        f"--artifacts-destination {ROOT / 'mlartifacts'} --port {port}[/dim]",
        soft_wrap=True,
    )
    console.print(f"MLflow: {links['mlflow_experiment']}", soft_wrap=True)


def _short(value: Any) -> str:
    """A config value for the table: floats to 3 significant digits (the API's trial configs
    are typed: numbers are numbers)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _plot(trials: list[dict], final: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    values = [t["best"] for t in trials if t["best"] is not None]
    axes[0].bar(range(len(values)), values)
    axes[0].set_ylim(min(values) - 2, 100)
    axes[0].set_xlabel("trial (best first)")
    axes[0].set_ylabel("val top-1 %")
    promotion = final["promotion"]
    labels = [display_name(k, v) for k, v in promotion.items()]  # "kd (at defaults)"
    means = [v["mean"] for v in promotion.values()]
    stds = [v["std"] for v in promotion.values()]
    axes[1].bar(labels, means, yerr=stds, capsize=6)
    axes[1].set_ylim(min(means) - 5, 100)
    axes[1].set_ylabel("test top-1 % (mean ± std over seeds)")
    fig.suptitle("pcd-digits study")
    fig.tight_layout()
    path = ROOT / "pcd-digits.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.resolve()


if __name__ == "__main__":
    main()
