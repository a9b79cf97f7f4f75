"""Links into MLflow's UI: the one owner of their form.

MLflow 3's UI opens an experiment in its GenAI view (an empty Traces page, runs listed as
"Eval") unless the link asks for the model-training view: its hash route carries
``?workflowType=machine_learning`` (the UI reads that query parameter of the hash route).
Links use the UI's public address (``PCD_MLFLOW_PUBLIC_URL``), which is the tracking URI when
that is ``http(s)://`` and nothing is set: a compose service name such as
``http://mlflow:5000`` is what the service reaches, not what a browser does. A local SQLite
store has no address: ``open_lines`` says which command serves its UI and the link it then
serves.
"""

from __future__ import annotations

from service.study_files import mlflow_ui_command

WORKFLOW = "workflowType=machine_learning"
LOCAL_UI_PORT = 5000  # where `mlflow ui` serves by default


def public_base(tracking_uri: str | None, public_url: str | None = None) -> str | None:
    """The MLflow UI's address as a browser reaches it, or None (a local store)."""
    if public_url:
        return public_url.rstrip("/")
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def experiment_url(base: str, experiment_id: str) -> str:
    """An experiment's page (its runs, trials nested under their study) in the ML view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?{WORKFLOW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the ML view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW}"


def links(
    tracking_uri: str | None,
    public_url: str | None,
    experiment_id: str | None,
    run_id: str | None,
) -> dict[str, str | None]:
    """``mlflow`` (the run) and ``mlflow_experiment`` links, None where there is no address."""
    base = public_base(tracking_uri, public_url)
    if base is None or experiment_id is None:
        return {"mlflow": None, "mlflow_experiment": None}
    return {
        "mlflow": run_url(base, experiment_id, run_id) if run_id else None,
        "mlflow_experiment": experiment_url(base, experiment_id),
    }


def open_lines(
    tracking_uri: str,
    public_url: str | None,
    experiment_id: str,
    run_id: str | None = None,
    *,
    experiment: bool = False,
) -> list[str]:
    """What a command prints at its end to open a run (or an experiment) in MLflow: the link
    (and, with ``experiment``, the experiment's too); for a local store, first the command
    that serves its UI."""
    base = public_base(tracking_uri, public_url)
    lines = []
    if base is None and tracking_uri.startswith("sqlite:"):
        lines.append(f"MLflow UI: {mlflow_ui_command(tracking_uri, LOCAL_UI_PORT)}")
        base = f"http://127.0.0.1:{LOCAL_UI_PORT}"
    if base is None:
        return [f"MLflow: {tracking_uri} experiment {experiment_id} run {run_id or '-'}"]
    if run_id:
        lines.append(f"MLflow run: {run_url(base, experiment_id, run_id)}")
    if experiment or not run_id:
        lines.append(f"MLflow experiment: {experiment_url(base, experiment_id)}")
    return lines
