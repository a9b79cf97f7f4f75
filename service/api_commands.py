"""``pcd study submit | watch | list | show | trials | extend | cancel | resume | delete``:
the study commands that drive the REST API (PCD_API_URL, PCD_API_TOKEN) through
service.client.

Every command that takes a study id also takes a unique prefix of one (the 8 characters
`pcd study list` prints); errors follow pcd_core.cli_errors (one ``error:`` line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pcd_core.cli_errors import RUNTIME_ERROR, USAGE_ERROR, fail
from service.client import ApiError, PcdClient, StudyIdError
from service.promotion_view import (
    FAIR_HINT,
    display_name,
    paired_line,
    promotion_lines,
    result_text,
)

DEFAULT_API_URL = "http://127.0.0.1:8000"
FINISHED = ("succeeded", "failed", "cancelled")

remote_app = typer.Typer()  # merged into `pcd study`

StudyId = Annotated[
    str, typer.Argument(help="a study id, or a unique prefix of one (see `pcd study list`)")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print the API's JSON instead of a table")]
T = TypeVar("T")


def connect() -> PcdClient:
    """A client of the API at PCD_API_URL with the token PCD_API_TOKEN."""
    url = os.environ.get("PCD_API_URL", DEFAULT_API_URL)
    return PcdClient(url, token=os.environ.get("PCD_API_TOKEN"))


def api_call(fn: Callable[[], T]) -> T:
    """``fn()``, its API errors as one ``error:`` line (a 4xx is the caller's: exit 2)."""
    try:
        return fn()
    except StudyIdError as err:
        fail(str(err), USAGE_ERROR)
    except ApiError as err:
        fail(err.detail, USAGE_ERROR if 400 <= err.status < 500 else RUNTIME_ERROR)


def parse_overrides(values: list[str]) -> dict[str, Any]:
    """``--set dotted.key=value`` strings -> {dotted.key: YAML value}."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail(f"--set {item!r}: expected dotted.key=value, e.g. budget.trials=6", USAGE_ERROR)
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key] = raw
    return out


def _format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_format_value(v)}" for k, v in config.items())


def _trials_done(study: dict[str, Any]) -> tuple[int, int]:
    """(finished trials, the budget): pending counts the trials not started yet."""
    t = study["trials"]
    done = t["completed"] + t["stopped_early"] + t["failed"]
    return done, done + t["running"] + t["pending"]


def _best_text(study: dict[str, Any]) -> str:
    value = (study.get("best") or {}).get("value")
    return "-" if value is None else _format_value(value)


def progress_line(study: dict[str, Any]) -> str:
    t = study["trials"]
    return (
        f"{study['id'][:8]} {study['status']:9s} trials: {t['running']} running, "
        f"{t['completed']} completed, {t['stopped_early']} stopped early, {t['failed']} "
        f"failed, {t['pending']} pending; best {_best_text(study)}"
    )


# ------------------------------------------------------------------------------- submit
def _submit_body(spec: str, overrides: dict[str, Any]) -> dict[str, Any]:
    path = Path(spec)
    if not path.is_file():  # a built-in space: the service applies the overrides
        return {"search_space": spec, "overrides": overrides}
    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        fail(f"{path}: not valid YAML ({err})", USAGE_ERROR)
    if not isinstance(body, dict):
        fail(f"{path}: a study spec must be a mapping", USAGE_ERROR)
    for key, value in overrides.items():
        node = body
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return body


@remote_app.command("submit")
def study_submit(
    spec: Annotated[str, typer.Argument(help="a YAML/JSON file, or a built-in space name")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="override, e.g. budget.trials=6"),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="follow the study to the end with a progress bar")
    ] = False,
    validate_only: Annotated[
        bool, typer.Option("--validate-only", help="check the spec, create nothing")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="a retried submit with this key creates one study"),
    ] = None,
) -> None:
    """Submit a study to the service (PCD_API_URL, PCD_API_TOKEN)."""
    body = _submit_body(spec, parse_overrides(set_ or []))
    with connect() as client:
        result = api_call(
            lambda: client.submit(
                body, validate_only=validate_only, idempotency_key=idempotency_key
            )
        )
        if validate_only:
            typer.echo("valid")
            return
        typer.echo(f"submitted {result['id']} ({result['status']})")
        if watch:
            _watch(client, result["id"])


# -------------------------------------------------------------------------------- watch
@remote_app.command("watch")
def study_watch(study_id: StudyId) -> None:
    """Follow a study to the end: trials done of the budget, ETA, best so far."""
    with connect() as client:
        _watch(client, api_call(lambda: client.resolve(study_id)))


def _watch(client: PcdClient, study_id: str, poll: float = 1.0) -> None:
    console = Console(highlight=False)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("best {task.fields[best]}"),
        console=console,
    )
    task = bar.add_task("queued", total=None, best="-")

    def update(study: dict[str, Any]) -> None:
        done, budget = _trials_done(study)
        bar.update(
            task,
            completed=done,
            total=budget or None,
            description=study["status"],
            best=_best_text(study),
        )

    with bar:
        final = api_call(lambda: client.wait(study_id, poll=poll, on_update=update))
    console.print(progress_line(final))
    for line in promotion_lines(final.get("promotion") or {}):
        console.print(line)
    links = final.get("links") or {}
    if links.get("mlflow"):
        console.print(f"MLflow run: {links['mlflow']}", soft_wrap=True)
    if links.get("mlflow_experiment"):
        console.print(f"MLflow experiment: {links['mlflow_experiment']}", soft_wrap=True)
    if final["status"] != "succeeded":
        fail(f"study {final['status']}: {final.get('error')}")


# --------------------------------------------------------------------------- read views
@remote_app.command("list")
def study_list(
    status: Annotated[
        str | None, typer.Option("--status", help="only studies in this status")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List studies, newest first (the 8-character ids work in every study command)."""
    with connect() as client:
        page = api_call(lambda: client.studies(status=status, limit=limit))
    if as_json:
        typer.echo(json.dumps(page, indent=1))
        return
    Console(highlight=False).print(_studies_table(page))


def _studies_table(page: dict[str, Any]) -> Table:
    """One row a study: id, name, status, trials done of the budget, failed, best, created."""
    table = Table(title=f"studies ({len(page['items'])} of {page['total']}, newest first)")
    table.add_column("id", no_wrap=True)
    table.add_column("name", min_width=8, overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("trials", "failed", "best"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("created", no_wrap=True)
    for study in page["items"]:
        done, budget = _trials_done(study)
        table.add_row(
            study["id"][:8],
            escape(study["name"]),
            study["status"],
            f"{done}/{budget}",
            str(study["trials"]["failed"]),
            _best_text(study),
            str(study["created_at"])[:16].replace("T", " "),
        )
    return table


@remote_app.command("show")
def study_show(study_id: StudyId, as_json: JsonFlag = False) -> None:
    """Show a study: status, trial counts, best configuration, promotion, MLflow link."""
    with connect() as client:
        study = api_call(lambda: client.study(client.resolve(study_id)))
    if as_json:
        typer.echo(json.dumps(study, indent=1))
        return
    Console(highlight=False).print(_study_table(study))


def _study_table(study: dict[str, Any]) -> Table:
    done, budget = _trials_done(study)
    t = study["trials"]
    best = study.get("best") or {}
    rows = [
        ("id", study["id"]),
        ("name", study["name"]),
        ("status", study["status"] + (f" ({study['error']})" if study.get("error") else "")),
        ("trials", f"{done} of {budget} done: {t['completed']} completed, "
         f"{t['stopped_early']} stopped early, {t['failed']} failed, {t['running']} running"),
        ("best", f"{_best_text(study)} (trial {best.get('trial_id') or '-'})"),
        ("best config", _config_text(best.get("config") or {}) or "-"),
        ("limits", _limits_text(study.get("limits") or {})),
        ("stop reason", study.get("stop_reason") or "-"),
        ("created", study["created_at"]),
        ("finished", study.get("finished_at") or "-"),
    ]  # fmt: skip
    rows += _promotion_rows(study.get("promotion") or {})
    links = study.get("links") or {}
    rows.append(("MLflow", links.get("mlflow") or "-"))
    rows.append(("MLflow experiment", links.get("mlflow_experiment") or "-"))
    table = Table(title=f"study {escape(study['name'])}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for field, value in rows:
        table.add_row(field, escape(str(value)))
    return table


def _promotion_rows(promotion: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per result (``kd (at defaults)``: test top-1 ...), one per paired difference
    and a note when a baseline ran at its defaults (service.promotion_view)."""
    rows = []
    for label, stats in promotion.items():
        rows.append((display_name(label, stats), result_text(stats)))
        if paired := paired_line(label, stats):
            rows.append(("paired", paired))
    if any(stats.get("at_defaults") for stats in promotion.values()):
        rows.append(("note", FAIR_HINT))
    return rows


def _limits_text(limits: dict[str, Any]) -> str:
    goal, failed = limits.get("goal"), limits.get("max_failed_trials")
    return (
        f"budget {limits.get('trials', '-')} trials; goal "
        f"{'-' if goal is None else _format_value(goal)}; failed-trial limit "
        f"{'-' if failed is None else failed}"
    )


@remote_app.command("trials")
def study_trials(
    study_id: StudyId,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, best first")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """A study's trials, best first."""
    with connect() as client:
        page = api_call(lambda: client.trials(client.resolve(study_id), limit=limit))
    if as_json:
        typer.echo(json.dumps(page, indent=1))
        return
    table = Table(title=f"trials ({len(page['items'])} of {page['total']}, best first)")
    for column in ("trial", "status", "outcome", "epochs", "best"):
        table.add_column(column, no_wrap=True, justify="right" if column == "epochs" else "left")
    table.add_column("config", overflow="fold")
    for t in page["items"]:
        best = "-" if t["best"] is None else _format_value(t["best"])
        table.add_row(
            t["trial_id"],
            t["status"],
            t["outcome"] or "-",
            str(t["epochs"]),
            best,
            escape(_config_text(t["config"])),
        )
    Console(highlight=False).print(table)


# ------------------------------------------------------------------------------- writes
@remote_app.command("extend")
def study_extend(
    study_id: StudyId,
    trials: Annotated[
        int,
        typer.Option("--trials", help="the new trial budget (not below the trials started)"),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Change a queued or running study's trial budget; its driver picks it up as it runs."""
    with connect() as client:
        study = api_call(lambda: client.set_budget(client.resolve(study_id), trials))
    if as_json:
        typer.echo(json.dumps(study, indent=1))
        return
    done, _ = _trials_done(study)
    typer.echo(
        f"study {study['id'][:8]} ({study['status']}): budget {study['limits']['trials']} "
        f"trials, {done} done"
    )


@remote_app.command("cancel")
def study_cancel(study_id: StudyId) -> None:
    """Cancel a queued or running study."""
    with connect() as client:
        typer.echo(api_call(lambda: client.cancel(client.resolve(study_id)))["status"])


@remote_app.command("resume")
def study_resume(study_id: StudyId) -> None:
    """Resume a failed or cancelled study."""
    with connect() as client:
        typer.echo(api_call(lambda: client.resume(client.resolve(study_id)))["status"])


@remote_app.command("delete")
def study_delete(
    study_id: StudyId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a finished study and its folder (its MLflow runs stay)."""
    with connect() as client:
        full_id = api_call(lambda: client.resolve(study_id))
        study = api_call(lambda: client.study(full_id))
        if study["status"] not in FINISHED:
            fail(
                f"study {full_id[:8]} is {study['status']}; cancel it first "
                f"(`pcd study cancel {full_id[:8]}`)",
                USAGE_ERROR,
            )
        if not yes:
            typer.confirm(
                f"delete study {full_id[:8]} ({study['name']}, {study['status']})?", abort=True
            )
        api_call(lambda: client.delete(full_id))
    typer.echo(f"deleted {full_id}")
