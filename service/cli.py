"""``pcd``, the command line: the entry point ([project.scripts]) that assembles every
command, each defined in its layer.

    pcd models | methods | data | teacher | distill | eval     pcd_core/cli.py (training)
    pcd serve                                                   the REST API (below)
    pcd study spaces | run                                      (below)
    pcd study submit | watch | list | show | trials | cancel | resume | delete
                                                                service/api_commands.py
    pcd reproduce cifar100                                      (below)
    pcd compare                                                 service/compare_cli.py

Every command reports an expected failure with pcd_core.cli_errors.fail: one line
``error: <message>`` on stderr, exit code 2 for bad usage and 1 for a failure, 130 on Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer._click.core import Command, Context
from typer.core import TyperOption

import pcd_core
from pcd_core import cli as pcd_core_cli
from pcd_core.cli_errors import INTERRUPTED, USAGE_ERROR, OneLineErrors, fail
from search_spaces import SpecError, builtin_names, load_spec
from service.api_commands import parse_overrides, remote_app
from service.compare_cli import compare_app
from service.settings import (
    DEFAULT_DATA_ROOT,
    DEFAULT_MLFLOW_LOCAL_DIR,
    DEFAULT_TEACHER_ROOT,
    RunnerSettings,
)

if TYPE_CHECKING:  # imported where used: Ray, MLflow and torch load only for the command run
    from search_spaces.reproduce import Benchmark, Pair
    from search_spaces.schema import StudySpec
    from service.reproduce import ReproduceRequest, Reproduction
    from service.study_files import StudySummary

serve_app = typer.Typer()  # the `serve` command, merged into the root
study_app = typer.Typer(
    help="Hyperparameter-search studies (Ray Tune + Optuna + MLflow).", no_args_is_help=True
)
reproduce_app = typer.Typer(
    help="Reproduce a published table as fixed-configuration studies.", no_args_is_help=True
)


# ------------------------------------------------------------------ the command tree, in full
class _RootGroup(OneLineErrors):
    """The root command: one-line errors, and flags shown without a ``<bool>`` type (typer's
    rich help prints a type beside every option, flags included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _hide_flag_types(self)


def _hide_flag_types(command: Command) -> None:
    for param in command.params:
        _hide_type_of_flag(param)
    make_help_option = command.get_help_option  # --help is made per call: hide its type too

    def help_option(ctx: Context) -> Any:
        option = make_help_option(ctx)
        _hide_type_of_flag(option)
        return option

    command.get_help_option = help_option  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub)


def _hide_type_of_flag(param: Any) -> None:
    if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
        param.metavar = ""


app = typer.Typer(
    cls=_RootGroup,
    help="Progressive Class-level Distillation: train teachers, distil students, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(pcd_core_cli.app)  # models, methods, data, teacher, distill, eval


def _track_run(kind: str, config: Any, out: Path, resume: bool) -> Any:
    """pcd_core's run tracker here: MLflow (service.run_tracking; imported on first use)."""
    from service.run_tracking import start_run

    return start_run(kind, config, out, resume)


pcd_core_cli.set_run_tracker(_track_run)  # `pcd distill`, `pcd teacher train` (--no-track)
app.add_typer(serve_app)  # serve
app.add_typer(study_app, name="study")
study_app.add_typer(remote_app)  # submit, watch, list, show, trials, cancel, resume, delete
app.add_typer(reproduce_app, name="reproduce")
app.add_typer(compare_app)  # compare (service/compare_cli.py)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pcd {pcd_core.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Progressive Class-level Distillation: train teachers, distil students, evaluate."""


@study_app.command("spaces")
def study_spaces() -> None:
    """List the built-in search spaces."""
    for name in builtin_names():
        spec = load_spec(name)
        typer.echo(f"{name:16s} {spec.method:4s} {spec.student:10s} {spec.description}")


@study_app.command("run")
def study_run(
    spec: Annotated[str, typer.Argument(help="a YAML file, or a built-in space name")],
    out: Annotated[
        Path | None, typer.Option("--out", help="study folder; default runs/studies/<name>")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="override, e.g. budget.trials=6"),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", envvar="PCD_RAY_ADDRESS", help="default: a local Ray"),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            envvar="PCD_MLFLOW_TRACKING_URI",
            help="MLflow tracking URI; default: the local store in PCD_MLFLOW_LOCAL_DIR (runs/)",
        ),
    ] = None,
    optuna_storage: Annotated[
        str | None,
        typer.Option(
            "--optuna-storage",
            envvar="PCD_OPTUNA_STORAGE",
            help="Optuna storage URL; default: in the study folder",
        ),
    ] = None,
    data_root: Annotated[
        Path, typer.Option("--data-root", envvar="PCD_DATA_ROOT", help="data folder")
    ] = DEFAULT_DATA_ROOT,
    teacher_root: Annotated[
        Path,
        typer.Option("--teacher-root", envvar="PCD_TEACHER_ROOT", help="stored teachers' folder"),
    ] = DEFAULT_TEACHER_ROOT,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of a local Ray")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no live table of the trials")
    ] = False,
    study_dir: Annotated[
        Path | None, typer.Option("--study-dir", hidden=True, help="deprecated: use --out")
    ] = None,
) -> None:
    """Run a study to the end (or resume it, if --out holds a started one)."""
    study = _load_study(spec, set_)
    folder = out or study_dir or Path("runs") / "studies" / study.name
    settings = _study_settings(
        tracking_uri=tracking_uri,
        optuna_storage=optuna_storage,
        ray_address=ray_address,
        data_root=data_root,
        teacher_root=teacher_root,
        num_cpus=num_cpus,
    )
    console = Console()
    result = _run_study_live(study, folder, settings, console, quiet)
    _print_study(console, study, result, settings.mlflow_public_url)


def _load_study(spec: str, sets: list[str] | None) -> StudySpec:
    """The spec with its --set overrides; a bad one is a usage error."""
    try:
        return load_spec(spec, parse_overrides(sets or []))
    except SpecError as err:
        fail(str(err), USAGE_ERROR)


def _study_settings(
    *,
    tracking_uri: str | None,
    optuna_storage: str | None,
    ray_address: str | None,
    data_root: Path,
    teacher_root: Path,
    num_cpus: int | None,
) -> RunnerSettings:
    """The runner's settings from the options; the MLflow local store and public URL, which
    have no option, from the environment."""
    env = RunnerSettings.from_env()
    return RunnerSettings(
        tracking_uri=tracking_uri,
        mlflow_local_dir=env.mlflow_local_dir or DEFAULT_MLFLOW_LOCAL_DIR,
        mlflow_public_url=env.mlflow_public_url,
        optuna_storage=optuna_storage,
        ray_address=ray_address,
        data_root=data_root,
        teacher_root=teacher_root,
        num_cpus=num_cpus,
    )


def _run_study_live(
    study: StudySpec, folder: Path, settings: RunnerSettings, console: Console, quiet: bool
) -> StudySummary:
    """Run the study, showing a live table of its trials and its phases unless ``quiet``;
    a failure or Ctrl-C exits with one line."""
    from service.runner.live import LiveTrialTable
    from service.runner.study import StudyError, run_study

    callbacks = (
        []
        if quiet
        else [
            LiveTrialTable(
                study.objective.metric, study.objective.mode, study.budget.max_epochs, console
            )
        ]
    )
    try:
        return run_study(
            study,
            folder,
            settings,
            callbacks=callbacks,
            on_phase=None if quiet else lambda p: console.print(f"[dim]{p} ...[/dim]"),
        )
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume the study", INTERRUPTED)
    except (StudyError, SpecError, ValueError, FileNotFoundError) as err:
        fail(str(err))


def _print_study(
    console: Console, study: StudySpec, result: StudySummary, public_url: str | None
) -> None:
    """The leaderboard, the promoted run, the best configuration and where the study is."""
    from service.promotion_view import promotion_lines

    console.print(_leaderboard(study, result))
    for line in promotion_lines(result.promotion, "trained on train+val, last epoch"):
        console.print(line)
    console.print(
        f"best {study.objective.metric} (val): {result.best_value}; config {result.best_config}"
    )
    if result.stop_reason:
        console.print(f"search ended early: {result.stop_reason}")
    _print_mlflow(console, result, public_url)
    console.print(f"study folder: {result.study_dir}")


def _leaderboard(study: StudySpec, result: StudySummary) -> Table:
    """The trials, best first, with their configurations."""
    from service.ranking import ranked

    table = Table(title=f"study {study.name}: leaderboard ({study.objective.metric}, val)")
    for col in ("trial", "status", "epochs", "best", "config"):
        table.add_column(col)
    for row in ranked(result.trials, lambda r: r.best, study.objective.mode):
        table.add_row(
            row.trial_id,
            row.status,
            str(row.epochs),
            "-" if row.best is None else f"{row.best:.2f}",
            ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row.config.items()
            ),
        )
    return table


def _print_mlflow(console: Console, result: Any, public_url: str | None) -> None:
    """Where to see the study in MLflow: its run and experiment links (for a local store,
    first the command that serves its UI)."""
    from service.mlflow_links import open_lines
    from service.study_files import StudyFolder

    state = StudyFolder(Path(result.study_dir)).read_state()
    experiment_id = state.experiment_id if state else None
    if experiment_id is None:
        console.print(f"MLflow: {result.tracking_uri} run {result.parent_run_id}")
        return
    for line in open_lines(
        result.tracking_uri, public_url, experiment_id, result.parent_run_id, experiment=True
    ):
        console.print(line, highlight=False, soft_wrap=True)


@reproduce_app.command("cifar100")
def reproduce_cifar100(
    pairs: str = typer.Option("all", help="teacher-student ids, comma-separated, or all"),
    methods: str = typer.Option("kd,dkd,pcd", help="comma-separated: ce, kd, dkd, pcd"),
    seeds: int = typer.Option(3, help="runs per (pair, method): seeds 0..N-1"),
    epochs: int = typer.Option(None, help="default: the standard recipe (240)"),
    teacher_epochs: int = typer.Option(None, help="teachers to train; default: --epochs"),
    data_root: Path = typer.Option(
        DEFAULT_DATA_ROOT,
        envvar="PCD_DATA_ROOT",
        help="folder holding cifar-100-python/ (see `pcd data download`)",
    ),
    out: Path = typer.Option(Path("runs/reproduce"), help="studies, table.md and table.json"),
    teacher_root: Path = typer.Option(
        DEFAULT_TEACHER_ROOT,
        envvar="PCD_TEACHER_ROOT",
        help="teacher checkpoints (the service's teacher root): ROOT/cifar100/<arch>.pt",
    ),
    cpus_per_run: float = typer.Option(1.0, help="Ray CPUs of each training run"),
    gpus_per_run: float = typer.Option(0.0, help="Ray GPUs of each training run (e.g. 0.5)"),
    parallel: int = typer.Option(0, help="studies at once; 0: all (Ray queues their runs)"),
    ray_address: str = typer.Option(None, envvar="PCD_RAY_ADDRESS", help="default: local Ray"),
    tracking_uri: str = typer.Option(
        None, envvar="PCD_MLFLOW_TRACKING_URI", help="default: sqlite:///OUT/mlflow.db"
    ),
    num_cpus: int = typer.Option(None, help="CPUs of a local Ray"),
    list_pairs: bool = typer.Option(False, "--list", help="list the pairs and published numbers"),
) -> None:
    """Run the literature's CIFAR-100 pairs with each method's published defaults (fixed
    configurations, no search) over seeds and write OUT/table.md beside the published numbers.
    Teachers are trained first when absent; a rerun skips what is finished."""
    from search_spaces.reproduce import load_benchmark
    from service.reproduce import ReproduceRequest

    bench = load_benchmark("cifar100")
    if list_pairs:
        _list_pairs(bench)
        return
    chosen_pairs, chosen_methods = _select(bench, pairs, methods)
    _check_counts(seeds, epochs, teacher_epochs, cpus_per_run, gpus_per_run, parallel)
    _check_data(bench, data_root)
    run_epochs = epochs or bench.epochs
    request = ReproduceRequest(
        pairs=chosen_pairs,
        methods=chosen_methods,
        seeds=seeds,
        epochs=run_epochs,
        teacher_epochs=teacher_epochs or run_epochs,
        data_root=data_root,
        out=out,
        teacher_root=teacher_root,
        cpus=cpus_per_run,
        gpus=gpus_per_run,
        parallel=parallel,
    )
    settings = RunnerSettings(tracking_uri=tracking_uri, ray_address=ray_address, num_cpus=num_cpus)
    console = Console()
    repro, data = _reproduce(bench, request, settings, console)
    _report_reproduction(console, repro, data)


def _list_pairs(bench: Benchmark) -> None:
    for pair in bench.pairs:
        published = ", ".join(f"{k} {v.value:.2f}" for k, v in pair.published.items())
        typer.echo(f"{pair.id:24s} {pair.family:5s} {published}")


def _select(bench: Benchmark, pairs: str, methods: str) -> tuple[list[Pair], list[str]]:
    """The pairs and methods asked for; an unknown one is a usage error."""
    from service.reproduce import ReproduceError, select

    try:
        return select(bench, pairs, methods)
    except ReproduceError as err:
        fail(str(err), USAGE_ERROR)


def _check_counts(
    seeds: int,
    epochs: int | None,
    teacher_epochs: int | None,
    cpus_per_run: float,
    gpus_per_run: float,
    parallel: int,
) -> None:
    for name, value in (
        ("--seeds", seeds),
        ("--epochs", epochs),
        ("--teacher-epochs", teacher_epochs),
    ):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1, got {value}", USAGE_ERROR)
    if cpus_per_run <= 0 or gpus_per_run < 0 or parallel < 0:
        fail("--cpus-per-run must be > 0, --gpus-per-run and --parallel >= 0", USAGE_ERROR)


def _check_data(bench: Benchmark, data_root: Path) -> None:
    """A missing archive fails with one line now, not in every study later."""
    from pcd_core.data import DatasetError, load_dataset

    try:
        load_dataset(bench.dataset, "test", data_root)
    except DatasetError as err:
        fail(str(err))


def _reproduce(
    bench: Benchmark, request: ReproduceRequest, settings: RunnerSettings, console: Console
) -> tuple[Reproduction, dict[str, Any]]:
    """Plan the studies, train what is missing and write the table: the reproduction and the
    table's data. A failure or Ctrl-C exits with one line."""
    from pcd_core.data import DatasetError
    from pcd_core.train import CheckpointError
    from service.reproduce import ReproduceError, Reproduction
    from service.runner.study import StudyError

    try:
        repro = Reproduction(bench, request, settings)
        missing = repro.load_teachers()
        repro.plan()
        console.print(_plan_line(repro, missing, settings.ray_address), highlight=False)
        if repro.needs_work():
            _reproduce_run(repro, missing, settings, console)
        repro.record_teachers()
        return repro, repro.write_table()
    except KeyboardInterrupt:
        import ray

        if ray.is_initialized():  # the studies' threads wait on Ray: release them
            ray.shutdown()
        fail("interrupted; run the same command again to resume", INTERRUPTED)
    except (ReproduceError, StudyError, CheckpointError, SpecError, DatasetError) as err:
        fail(str(err))


def _plan_line(repro: Reproduction, missing: list[str], ray_address: str | None) -> str:
    """What the reproduction will run, what is finished, and where."""
    req = repro.req
    skipped = sum(s.status == "skipped" for s in repro.studies)
    return (
        f"{len(repro.studies)} studies ({len(req.pairs)} pairs x {len(req.methods)} "
        f"methods, {req.seeds} seeds, {req.epochs} epochs), {skipped} finished before; teachers: "
        f"{len(repro.teachers)} reused, {len(missing)} to train; "
        f"{req.cpus:g} CPU + {req.gpus:g} GPU per run on "
        f"{ray_address or 'a local Ray'}"
    )


def _report_reproduction(console: Console, repro: Reproduction, data: dict[str, Any]) -> None:
    """The table beside the published numbers; exits 1 when a study failed."""
    _print_reproduction(console, data)
    console.print(f"table: {repro.out / 'table.md'} and table.json", highlight=False)
    failed = [r for r in data["rows"] if r.get("status") == "failed"]
    if failed:
        fail(f"{len(failed)} studies failed; see {repro.out / 'table.md'}")


def _reproduce_run(repro: Any, missing: list[str], settings: Any, console: Console) -> None:
    """Train the missing teachers, then the studies, with a live progress display."""
    import threading

    import ray
    from mlflow.tracking import MlflowClient
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from service.runner.study import ensure_experiment, init_ray

    init_ray(settings)
    if ray.cluster_resources().get("GPU", 0) > 0 and repro.req.gpus == 0:
        console.print(
            "[yellow]note: the cluster has GPUs but runs ask for none (--gpus-per-run 0): "
            "they will train on CPUs[/yellow]"
        )
    ensure_experiment(MlflowClient(settings.tracking_uri), repro.studies_dir)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "epochs",
        TimeElapsedColumn(),
        console=console,
    )
    t_done, t_total = repro.teacher_epochs_done()
    teachers = progress.add_task("teachers", total=max(t_total, 1), completed=t_done)
    runs = progress.add_task("studies", total=1, start=False)
    stop = threading.Event()

    def refresh() -> None:
        done, total = repro.teacher_epochs_done()
        progress.update(teachers, completed=done if total else 1)
        if repro.studies:
            done, total = repro.epochs_done()
            counts = [s.status for s in repro.studies]
            finished = sum(c in ("done", "skipped") for c in counts)
            progress.start_task(runs)
            progress.update(
                runs,
                total=total,
                completed=done,
                description=f"studies {finished}/{len(counts)} "
                f"({counts.count('running')} running, {counts.count('failed')} failed)",
            )

    def poll() -> None:
        while not stop.wait(2.0):
            refresh()

    poller = threading.Thread(target=poll, daemon=True)
    with progress:
        poller.start()
        try:
            repro.train_teachers(missing, refresh)
            repro.plan()  # the new teachers' hashes go into the specs
            refresh()
            repro.run_studies(refresh)
        finally:
            stop.set()
            refresh()


def _print_reproduction(console: Console, data: dict[str, Any]) -> None:
    from service.reproduce import cell_text

    table = Table(title=f"{data['benchmark']}: test top-1 %, ours beside the published numbers")
    for col in ("pair", "method", "ours best epoch", "ours last epoch", "published", "source"):
        table.add_column(col)
    for row in data["rows"]:
        ours = row["ours"] or {}
        pub = row["published"]
        table.add_row(
            row["pair"],
            row["method"] + ("" if row["status"] != "failed" else " [failed]"),
            cell_text(ours.get("best_epoch")),
            cell_text(ours.get("last_epoch")),
            "" if not pub else f"{pub['value']:.2f}",
            "" if not pub else pub["source"],
        )
    console.print(table)


@serve_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="bind address"),
    port: int = typer.Option(8000, help="port"),
    log_level: str = typer.Option("info", help="uvicorn's: critical, error, warning, info, debug"),
) -> None:
    """Run the REST API (settings from PCD_* environment variables; see README)."""
    import uvicorn
    from pydantic import ValidationError

    from service.api.app import create_app
    from service.settings import Settings

    try:
        settings = Settings()
        settings.tokens()
    except (ValidationError, ValueError) as err:
        fail(str(err).splitlines()[0], USAGE_ERROR)
    _check_database(settings.database_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, workers=1)


def _check_database(url: str) -> None:
    """Exit with one line (the database's host, never its password) when the study store
    cannot be reached or migrated: the API would only fail at start-up with a traceback."""
    from sqlalchemy.engine import make_url

    from service.store import migrate

    try:
        migrate(url)
    except Exception as err:
        try:
            parsed = make_url(url)
            where = f"host {parsed.host}" if parsed.host else f"a local {parsed.drivername} file"
        except Exception:
            where = "an unparseable URL"
        fail(f"the study database (PCD_DATABASE_URL, {where}) is unusable: {type(err).__name__}")


if __name__ == "__main__":
    app()
