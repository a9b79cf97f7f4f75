"""pcd_core's commands of the ``pcd`` command line (the whole tree is assembled in
service/cli.py, the entry point; pcd_core imports nothing from the service).

    pcd models list                  the model zoo, with parameter counts
    pcd methods list / show METHOD   training objectives and their options
    pcd data download / info         datasets (pcd_core.data.cli)
    pcd teacher train --arch ARCH    train a teacher (cross-entropy), write a hashed artifact
    pcd distill --teacher T --student ARCH --method pcd --set key=value ...
    pcd eval CKPT                    top-1/top-5 of a teacher artifact or a student run

`teacher train` and `distill` report each run to the run tracker that the command line which
assembles these commands sets (``set_run_tracker``; the ``pcd`` entry point's records it in
MLflow), unless --no-track.

Every expected failure (bad options, a missing or corrupt checkpoint, a missing data set) is
reported by pcd_core.cli_errors.fail as one line ``error: <message>`` on stderr, with exit
code 2 for bad usage and 1 for a runtime failure; Ctrl-C exits 130. Progress goes to stderr,
results to stdout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import torch
import typer
from pydantic import ValidationError
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
from torch import nn

from pcd_core.cli_errors import INTERRUPTED, RUNTIME_ERROR, USAGE_ERROR, fail, one_line
from pcd_core.data import AUGMENTS, DeviceLoader, ImageData, load_dataset, train_val_split
from pcd_core.data.cli import DataRootOpt, data_app
from pcd_core.data.datasets import IMAGE_FOLDER_NEEDS_ROOT
from pcd_core.data.errors import DatasetError
from pcd_core.methods import (
    METHODS,
    MethodOptionError,
    build_method,
    needs_teacher,
    parse_options,
)
from pcd_core.models import build_model, count_parameters, list_models
from pcd_core.run_dir import RunDir
from pcd_core.train import (
    CheckpointError,
    DataConfig,
    EpochMetrics,
    RunResult,
    TeacherInfo,
    TrainConfig,
    default_epochs,
    load_teacher,
    stored_config,
    train,
)
from pcd_core.train.checkpoint import TEACHER_FORMAT, load_file
from pcd_core.train.metrics import classification_metrics, predict
from pcd_core.train.trainer import dataset_fingerprint, resolve_device

app = typer.Typer(
    help="pcd_core: train teachers, distil students, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="The model zoo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
methods_app = typer.Typer(
    help="Training objectives (ce, kd, dkd, pcd) and their options.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
teacher_app = typer.Typer(
    help="Teachers: train one with cross-entropy and write a hashed artifact.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.add_typer(methods_app, name="methods")
app.add_typer(data_app, name="data")
app.add_typer(teacher_app, name="teacher")


# ------------------------------------------------------------------------------------ errors
class _UsageError(ValueError):
    """Bad arguments found by the CLI itself (exit code 2)."""


class _RuntimeFailure(RuntimeError):
    """A failure of the run, not of its arguments (exit code 1)."""


def _format_validation(err: ValidationError) -> str:
    """A pydantic error as one line: ``field: message; other.field: message``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if e["type"] not in ("value_error", "assertion_error") and "input" in e:
            value = e["input"]
            if isinstance(value, str | int | float | bool) or value is None:
                msg += f" (got {value!r})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return one_line("; ".join(parts)) or "invalid configuration"


@contextmanager
def _errors(interrupt_hint: Callable[[], str] | None = None) -> Iterator[None]:
    """Turn every expected exception into one ``error:`` line and an exit code."""
    try:
        yield
    except KeyboardInterrupt:
        hint = interrupt_hint() if interrupt_hint is not None else ""
        fail(f"interrupted{hint}", INTERRUPTED)
    except ValidationError as exc:
        fail(_format_validation(exc), USAGE_ERROR)
    except (CheckpointError, DatasetError, _RuntimeFailure, OSError) as exc:
        fail(str(exc) or type(exc).__name__, RUNTIME_ERROR)
    except torch.OutOfMemoryError as exc:
        fail(f"out of memory ({exc}); try a smaller --batch-size", RUNTIME_ERROR)
    except (MethodOptionError, _UsageError, ValueError) as exc:  # bad options
        fail(str(exc) or type(exc).__name__, USAGE_ERROR)


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise _UsageError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    return Console(highlight=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}%"


def _test_summary(result: RunResult) -> str:
    """Where the run selected its weights and what they score on test, labelled."""
    last = result.test["last"]
    last_part = f"{_pct(last['top1'])} (last epoch {last['epoch']})"
    best = result.test.get("best_val")
    if best is None:  # no validation split: nothing to select on, the last epoch counts
        return f"no val split, test top-1 {last_part}"
    return (
        f"best-on-val epoch {best['epoch']} (val top-1 {_pct(result.best_val_top1)}) | "
        f"test top-1 {_pct(best['top1'])} (best-on-val weights), {last_part}"
    )


# ---------------------------------------------------------------------------------- models
@models_app.callback()
def _models() -> None:
    """The model zoo."""


def _parameter_count(name: str, classes: int, in_channels: int, image_size: int) -> str:
    try:
        model = build_model(name, classes, in_channels, image_size)
    except ValueError:  # e.g. an input too small for this architecture
        return "-"
    return f"{count_parameters(model) / 1e6:.3f}"


@models_app.command("list")
def models_list(
    classes: Annotated[
        int, typer.Option("--classes", help="class count for the parameter column")
    ] = 100,
    in_channels: Annotated[int, typer.Option("--in-channels", help="input channels")] = 3,
    image_size: Annotated[int, typer.Option("--image-size", help="input side in pixels")] = 32,
    family: Annotated[
        str | None, typer.Option("--family", help="only this family (resnet, wrn, vgg, ...)")
    ] = None,
) -> None:
    """List the registered models with their parameter counts."""
    with _errors():
        if classes < 2:
            raise _UsageError(f"--classes must be at least 2, got {classes}")
        if in_channels < 1 or image_size < 1:
            raise _UsageError("--in-channels and --image-size must be positive")
        specs = [s for s in list_models() if family is None or s.family == family]
        if not specs:
            families = sorted({s.family for s in list_models()})
            raise _UsageError(f"unknown family {family!r}; choose one of {', '.join(families)}")
        table = Table(
            title=f"models ({classes} classes, input {in_channels}x{image_size}x{image_size})"
        )
        table.add_column("name", no_wrap=True, style="bold")
        table.add_column("family", no_wrap=True)
        table.add_column("params (M)", justify="right", no_wrap=True)
        table.add_column("description", overflow="fold")
        for spec in specs:
            params = _parameter_count(spec.name, classes, in_channels, image_size)
            table.add_row(spec.name, spec.family, params, escape(spec.description))
        _stdout().print(table)


# --------------------------------------------------------------------------------- methods
@methods_app.callback()
def _methods() -> None:
    """Training objectives (ce, kd, dkd, pcd) and their options."""


@methods_app.command("list")
def methods_list() -> None:
    """List the training objectives."""
    table = Table(title="methods")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("teacher", no_wrap=True)
    table.add_column("summary", overflow="fold")
    for name, spec in METHODS.items():
        table.add_row(name, "yes" if spec.needs_teacher else "no", escape(spec.summary))
    _stdout().print(table)


@methods_app.command("show")
def methods_show(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(METHODS)}")],
) -> None:
    """Show the options of a method (set them with `pcd distill --set key=value`)."""
    with _errors():
        parse_options(name)  # unknown method -> MethodOptionError
        table = Table(title=escape(f"{name}: {METHODS[name].summary}"))
        table.add_column("option", no_wrap=True, style="bold")
        table.add_column("default", no_wrap=True)
        table.add_column("description", overflow="fold")
        for option, field in METHODS[name].options.model_fields.items():
            table.add_row(option, escape(repr(field.default)), escape(field.description or ""))
        _stdout().print(table)


# ------------------------------------------------------------------------ shared train options
DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset", help="digits, cifar10, cifar100, mnist, fashion_mnist or image_folder"
    ),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--epochs", help="epochs (default: 240, the recipe, for cifar10/cifar100; 20 otherwise)"
    ),
]
AugmentOpt = Annotated[
    str | None,
    typer.Option(
        "--augment",
        help=f"training-batch augmentation: {', '.join(AUGMENTS)} (crop: 4-pixel padded random "
        "crop; flip: horizontal, p=0.5). Default: crop+flip for cifar10/cifar100, none "
        "otherwise: flips and crops change digits, text and left/right labels",
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        help="image_folder only: resize images to NxN (default: their own size, which all "
        "must share)",
    ),
]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="batch size (default: 64)")]
LrOpt = Annotated[
    float | None, typer.Option("--lr", help="learning rate (default: 0.05, 0.01 mobile)")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="model init seed")]
DataSeedOpt = Annotated[
    int | None, typer.Option("--data-seed", help="split, batch order, augmentation seed")
]
ValFracOpt = Annotated[
    float | None, typer.Option("--val-fraction", help="held-out part of train (default 0.1)")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="run folder")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help=f"continue from OUT/{RunDir.LAST} when it exists")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="torch CPU threads (default: torch's)")
]
NoTrackOpt = Annotated[
    bool,
    typer.Option("--no-track", help="do not record the run in MLflow (tracked by default)"),
]


def _build_config(
    *,
    arch: str,
    method: str,
    method_options: dict[str, Any],
    teacher: Path | None,
    teacher_hash: str | None,
    dataset: str,
    data_root: Path | None,
    data_seed: int | None,
    val_fraction: float | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int,
    device: str,
    augment: str | None = None,
    image_size: int | None = None,
    logit_bank: Path | None = None,
) -> TrainConfig:
    """A TrainConfig from CLI values; options left out keep the config's defaults (epochs:
    the data set's, see :func:`default_epochs`)."""
    data: dict[str, Any] = {"name": dataset, "root": data_root}
    optional = (
        ("seed", data_seed),
        ("val_fraction", val_fraction),
        ("augment", augment),
        ("image_size", image_size),
    )
    data.update({key: value for key, value in optional if value is not None})
    if epochs is None:
        epochs = default_epochs(dataset)
    fields: dict[str, Any] = {
        "data": data,
        "arch": arch,
        "method": method,
        "method_options": method_options,
        "teacher": teacher,
        "teacher_hash": teacher_hash,
        "seed": seed,
        "device": device,
        "logit_bank": logit_bank,
    }
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            fields[key] = value
    config = TrainConfig.model_validate(fields)
    if config.data.name == "image_folder" and config.data.root is None:
        raise _UsageError(IMAGE_FOLDER_NEEDS_ROOT)
    _check_device(config.device)
    return config


def _root_from_env(ctx: typer.Context) -> bool:
    """Whether --data-root came from PCD_DATA_ROOT rather than the command line."""
    source = ctx.get_parameter_source("data_root")  # click's ParameterSource
    return source is not None and source.name == "ENVIRONMENT"


def _given_root(ctx: typer.Context, data_root: Path | None, dataset: str) -> Path | None:
    """--data-root as given. Taken from PCD_DATA_ROOT it is used for image folders only: the
    other data sets' loaders read that variable themselves, after the places they look first
    (Debian's Fashion-MNIST), and their configs keep no root, as before."""
    if _root_from_env(ctx) and dataset.strip().lower().replace("-", "_") != "image_folder":
        return None
    return data_root


def _settings_line(config: TrainConfig, epochs_given: bool) -> str:
    """The data settings a run trains with: what the defaults chose, printed when its first
    epoch starts (a run that fails to set up prints its error line alone)."""
    data = config.data
    size = "" if data.name != "image_folder" else f", image size {data.image_size or 'own'}"
    chosen = "" if epochs_given else f" (default for {data.name}; --epochs N to change)"
    return f"{data.name}: augment {data.augment}{size}, {config.epochs} epochs{chosen}"


def _check_device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except RuntimeError as exc:  # torch: "Invalid device string"
        raise _UsageError(f"device: {exc}") from None


def _check_out_dir(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise _UsageError(f"--out {out} exists and is not a folder")
    if not resume and RunDir(out).has_checkpoint():
        raise _RuntimeFailure(
            f"{out} already holds a run ({RunDir.LAST}); pass --resume to continue it "
            "or choose another --out"
        )


@contextmanager
def _tidy_on_failure(out: Path) -> Iterator[None]:
    """A run that fails before its first epoch leaves no folder behind: the run folder and
    the parents made for it are removed when the command made them and nothing was recorded
    in them. A folder that existed before is never removed."""
    made: list[Path] = []
    path = out.absolute()
    while not path.exists() and path.parent != path:
        made.append(path)
        path = path.parent
    try:
        yield
    except BaseException:
        if made and RunDir(out).remove_if_unstarted():
            for parent in made[1:]:
                try:
                    parent.rmdir()  # only when empty
                except OSError:
                    break
        raise


def _describe(metrics: EpochMetrics) -> str:
    loss = metrics.losses.get("total", sum(metrics.losses.values()))
    return f"val top-1 {_pct(metrics.val_top1)}  loss {loss:.4f}"


@contextmanager
def _epoch_progress(quiet: bool, label: str, header: str | None) -> Iterator[Any]:
    """A rich progress bar over epochs on stderr, fed by train()'s ``progress`` callback.

    It starts at the first epoch (after the data and the teacher have loaded), so that a run
    that fails while setting up prints its error line alone."""
    if quiet:
        yield None
        return
    console = _stderr()
    bar = Progress(
        TextColumn("[bold]{task.fields[label]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("", total=None, label=label)
    state: dict[str, Any] = {"started": False, "last": None}

    def update(epoch: int, epochs: int, metrics: EpochMetrics | None) -> None:
        if not state["started"]:
            if header:
                console.print(header, markup=False, soft_wrap=True)
            bar.start()
            state["started"] = True
        if metrics is not None:
            state["last"] = metrics
        shown = state["last"]
        tail = "" if shown is None else f"  {_describe(shown)}"
        done = epoch if metrics is not None else epoch - 1
        bar.update(task, total=epochs, completed=done, description=f"epoch {epoch}{tail}")

    try:
        yield update
    finally:
        if state["started"]:
            bar.stop()


# ---------------------------------------------------------------------------- run tracking
class TrackedRun(Protocol):
    """One training run as a run tracker records it (the ``pcd`` entry point's: MLflow)."""

    def on_epoch_end(self, metrics: EpochMetrics, checkpoint_dir: Path) -> None: ...

    def finished(self, result: RunResult) -> list[str]:
        """Record the result; returns the lines to print (where to see the run)."""
        ...

    def failed(self, reason: str, interrupted: bool) -> None: ...


# (kind: "teacher" | "distill", config, run folder, resume) -> a started TrackedRun
RunTracker = Callable[[str, TrainConfig, Path, bool], TrackedRun]
_tracker: RunTracker | None = None


def set_run_tracker(tracker: RunTracker | None) -> None:
    """Record every `pcd teacher train` and `pcd distill` run with ``tracker`` (unless
    --no-track). pcd_core has none of its own: the command line that assembles these
    commands sets one."""
    global _tracker
    _tracker = tracker


def _run(
    config: TrainConfig,
    out: Path,
    *,
    resume: bool,
    quiet: bool,
    label: str,
    settings: str,
    header: str | None = None,
    kind: str,
    track: bool,
) -> tuple[RunResult, list[str]]:
    """Train, recorded by the run tracker when there is one and ``track``: the result and
    the tracker's lines to print. A failure marks the tracked run failed, then propagates;
    a run that failed before its first epoch leaves no folder (_tidy_on_failure). The
    settings line is printed when the first epoch starts (a failed setup prints only its
    error)."""
    tracked = _tracking(lambda: _tracker(kind, config, out, resume)) if track and _tracker else None
    try:
        with _tidy_on_failure(out), _epoch_progress(quiet, label, header) as bar:
            said: list[bool] = []

            def progress(epoch: int, epochs: int, metrics: EpochMetrics | None) -> None:
                if not said:
                    _stderr().print(settings, markup=False, soft_wrap=True)
                    said.append(True)
                if bar is not None:
                    bar(epoch, epochs, metrics)

            result = train(
                config,
                out,
                resume=resume,
                progress=progress,
                on_epoch_end=_tracked_epochs(tracked) if tracked else None,
            )
        return result, _tracking(lambda: tracked.finished(result)) if tracked else []
    except BaseException as err:
        if tracked is not None:
            interrupted = isinstance(err, KeyboardInterrupt)
            tracked.failed("interrupted" if interrupted else one_line(err), interrupted)
        raise


def _tracking(call: Callable[[], Any]) -> Any:
    """A call into the run tracker; its failure (e.g. an unreachable tracking server) as one
    line that says how to go on."""
    try:
        return call()
    except Exception as err:
        raise _RuntimeFailure(
            f"run tracking failed: {one_line(err)} (--no-track trains without it; "
            "--resume continues the run)"
        ) from err


def _tracked_epochs(tracked: TrackedRun) -> Callable[[EpochMetrics, Path], None]:
    def on_epoch_end(metrics: EpochMetrics, checkpoint_dir: Path) -> None:
        _tracking(lambda: tracked.on_epoch_end(metrics, checkpoint_dir))

    return on_epoch_end


class _ResumeHint:
    """What Ctrl-C should say: how to continue the run, once its folder is known."""

    def __init__(self) -> None:
        self.out_dir: Path | None = None

    def __call__(self) -> str:
        if self.out_dir is None or not RunDir(self.out_dir).has_checkpoint():
            return ""
        return f"; continue with the same options and --resume (run folder {self.out_dir})"


# --------------------------------------------------------------------------------- teacher
@teacher_app.callback()
def _teacher() -> None:
    """Teachers: train one with cross-entropy and write a hashed artifact."""


@teacher_app.command(
    "train",
    help=f"Train a teacher with cross-entropy and write its hashed artifact ({RunDir.TEACHER}).",
)
def teacher_train(
    ctx: typer.Context,
    arch: Annotated[str, typer.Option("--arch", help="model name (see `pcd models list`)")],
    dataset: DatasetOpt = "digits",
    data_root: DataRootOpt = None,
    augment: AugmentOpt = None,
    image_size: ImageSizeOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    seed: SeedOpt = 0,
    data_seed: DataSeedOpt = None,
    val_fraction: ValFracOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
    threads: ThreadsOpt = None,
    no_track: NoTrackOpt = False,
) -> None:
    hint = _ResumeHint()
    with _errors(hint):
        _set_threads(threads)
        config = _build_config(
            arch=arch,
            method="ce",
            method_options={},
            teacher=None,
            teacher_hash=None,
            dataset=dataset,
            data_root=_given_root(ctx, data_root, dataset),
            data_seed=data_seed,
            val_fraction=val_fraction,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            augment=augment,
            image_size=image_size,
        )
        out_dir = out or Path("runs") / f"teacher-{config.arch}-{config.data.name}-s{seed}"
        hint.out_dir = out_dir
        _check_out_dir(out_dir, resume)
        settings = _settings_line(config, epochs is not None)
        result, tracked = _run(
            config,
            out_dir,
            resume=resume,
            quiet=quiet,
            label=f"teacher {arch}",
            settings=settings,
            kind="teacher",
            track=not no_track,
        )
    if not result.completed or result.teacher_artifact is None or result.teacher_hash is None:
        fail(f"the run stopped before its last epoch; resume with --resume ({out_dir})")
    digest = result.teacher_hash
    typer.echo(f"teacher artifact: {result.teacher_artifact}")
    typer.echo(f"content hash: {digest[:12]} (sha256 {digest})")
    typer.echo(f"ce {config.arch} on {config.data.name}: {_test_summary(result)}")
    for line in tracked:
        typer.echo(line)


# --------------------------------------------------------------------------------- distill
def _parse_sets(values: Sequence[str]) -> dict[str, str]:
    """``key=value`` strings -> a dict (values stay strings: the method schema coerces)."""
    options: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _UsageError(f"--set expects key=value, got {item!r}")
        if key in options and options[key] != value.strip():
            raise _UsageError(f"--set {key} given twice ({options[key]!r} and {value.strip()!r})")
        options[key] = value.strip()
    return options


@app.command("distill")
def distill(
    ctx: typer.Context,
    teacher: Annotated[
        Path, typer.Option("--teacher", help="teacher artifact (from `pcd teacher train`)")
    ],
    student: Annotated[str, typer.Option("--student", help="student model name")],
    method: Annotated[str, typer.Option("--method", help=f"one of {', '.join(METHODS)}")] = "pcd",
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="method option (repeatable); see `pcd methods show METHOD`",
        ),
    ] = None,
    teacher_hash: Annotated[
        str | None, typer.Option("--teacher-hash", help="expected teacher hash (a prefix)")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="default: the teacher's data set")
    ] = None,
    data_root: DataRootOpt = None,
    augment: AugmentOpt = None,
    image_size: ImageSizeOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    seed: SeedOpt = 0,
    data_seed: DataSeedOpt = None,
    val_fraction: ValFracOpt = None,
    device: DeviceOpt = "auto",
    logit_bank: Annotated[
        Path | None, typer.Option("--logit-bank", help="folder of cached teacher logits")
    ] = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
    threads: ThreadsOpt = None,
    no_track: NoTrackOpt = False,
) -> None:
    """Distil a student from a teacher artifact with kd, dkd or pcd."""
    hint = _ResumeHint()
    with _errors(hint):
        _set_threads(threads)
        options = _distill_options(method, sets or [])
        teacher_hash = _clean_hash(teacher_hash)
        info = _checked_teacher(teacher, teacher_hash, method, options)
        dataset, image_size = _teacher_data(info, dataset, image_size)
        config = _build_config(
            arch=student,
            method=method,
            method_options=options,
            teacher=teacher,
            teacher_hash=teacher_hash,
            dataset=dataset,
            data_root=_given_root(ctx, data_root, dataset),
            data_seed=data_seed,
            val_fraction=val_fraction,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            augment=augment,
            image_size=image_size,
            logit_bank=logit_bank,
        )
        out_dir = out or Path("runs") / f"{method}-{student}-{config.data.name}-s{seed}"
        hint.out_dir = out_dir
        _check_out_dir(out_dir, resume)
        result, tracked = _run(
            config,
            out_dir,
            resume=resume,
            quiet=quiet,
            label=f"{method} {student}",
            settings=_settings_line(config, epochs is not None),
            header=_distill_header(info, student, method),
            kind="distill",
            track=not no_track,
        )
    _print_distilled(result, tracked, method, student, out_dir)


def _distill_options(method: str, sets: Sequence[str]) -> dict[str, Any]:
    """The --set options, checked against the method's schema and typed (4 -> 4.0); only
    those given, so that the run config stays minimal."""
    raw = _parse_sets(sets)
    parsed = parse_options(method, raw)  # unknown method / option -> MethodOptionError
    if not needs_teacher(method):
        raise _UsageError(f"method {method!r} trains without a teacher; use `pcd teacher train`")
    return parsed.model_dump(include=set(raw))


def _clean_hash(teacher_hash: str | None) -> str | None:
    """--teacher-hash in lower case; anything but hex digits is a usage error."""
    if teacher_hash is None:
        return None
    teacher_hash = teacher_hash.strip().lower()
    if not teacher_hash or any(c not in "0123456789abcdef" for c in teacher_hash):
        raise _UsageError(f"--teacher-hash must be hex digits, got {teacher_hash!r}")
    return teacher_hash


def _checked_teacher(
    teacher: Path, teacher_hash: str | None, method: str, options: dict[str, Any]
) -> TeacherInfo:
    """The teacher loads and verifies before any data is loaded (it names the data set when
    --dataset is left out); the method must fit its class count."""
    _, info = load_teacher(teacher, expected_hash=teacher_hash)
    build_method(method, options).check(info.num_classes)
    return info


def _teacher_data(
    info: TeacherInfo, dataset: str | None, image_size: int | None
) -> tuple[str, int | None]:
    """--dataset and --image-size, defaulting to the teacher's data set and, for an image
    folder, its image size (the student sees what the teacher saw)."""
    dataset = info.dataset if dataset is None else dataset
    if image_size is None and dataset == "image_folder":
        image_size = info.image_size
    return dataset, image_size


def _distill_header(info: TeacherInfo, student: str, method: str) -> str:
    return (
        f"teacher {info.arch} ({info.dataset}, hash {info.content_hash[:12]}, "
        f"test top-1 {info.test_top1:.2f}%) -> student {student}, method {method}"
    )


def _print_distilled(
    result: RunResult, tracked: list[str], method: str, student: str, out_dir: Path
) -> None:
    """The student's test scores, its hard classes' included, and the tracker's lines."""
    if not result.completed:
        fail(f"the run stopped before its last epoch; resume with --resume ({out_dir})")
    selected, which = result.test.get("best_val"), "best-on-val weights"
    if selected is None:
        selected, which = result.test["last"], "last epoch"
    typer.echo(
        f"{method} {student}: {_test_summary(result)} | "
        f"hard-class test top-1 {_pct(selected.get('hard_top1'))} ({which}) | out {out_dir}"
    )
    for line in tracked:
        typer.echo(line)


# ------------------------------------------------------------------------------------ eval
@dataclass
class _Loaded:
    """A model to evaluate and what is known about where it came from."""

    model: nn.Module
    description: str
    dataset: str
    data_root: Path | None
    val_fraction: float
    data_seed: int
    fingerprint: str | None = None  # of the train split the model saw (teachers record it)
    image_size: int | None = None  # image folders: the side the model saw (None: their own)

    def load(self, split: str) -> ImageData:
        """A split of the data the model is evaluated on, at the size it was trained at."""
        kw: dict[str, Any] = {}
        if self.dataset == "image_folder" and self.image_size is not None:
            kw["image_size"] = self.image_size
        return load_dataset(self.dataset, split, self.data_root, **kw)


def _run_config(run: RunDir) -> dict[str, Any]:
    """The config of a student/teacher run folder: its summary, else its last checkpoint."""
    if run.is_finished():
        summary = run.read_summary()
        if summary is None or not isinstance(summary.get("config"), dict):
            raise CheckpointError(f"{run.summary} is not a pcd run summary (no config)")
        return stored_config(dict(summary["config"]))
    if run.has_checkpoint():
        state = load_file(run.last, "run checkpoint")
        if isinstance(state.get("config"), dict):
            return stored_config(dict(state["config"]))
    raise CheckpointError(
        f"{run.path} holds no {RunDir.SUMMARY} or {RunDir.LAST}: not a pcd run folder "
        f"(evaluate a teacher artifact, a run folder, or its {RunDir.BEST} / {RunDir.LAST})"
    )


def _load_for_eval(path: Path, dataset: str | None, data_root: Path | None) -> _Loaded:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():  # the best-on-val weights; the last ones when the run had no val split
        run, weights = RunDir(path), RunDir(path).eval_weights()
    else:
        obj = load_file(path, "checkpoint")
        if obj.get("format") == TEACHER_FORMAT:
            model, info = load_teacher(path)
            # A teacher inside its run folder: use that run's split; otherwise the defaults.
            data = DataConfig(name=info.dataset)
            try:
                data = TrainConfig.model_validate(_run_config(RunDir(path.parent))).data
            except (CheckpointError, ValidationError):
                pass
            return _Loaded(
                image_size=info.image_size,
                model=model,
                description=f"teacher artifact {path} ({info.arch}, hash {info.content_hash[:12]})",
                dataset=dataset or info.dataset,
                data_root=data_root or data.root,
                val_fraction=data.val_fraction,
                data_seed=data.seed,
                fingerprint=info.dataset_fingerprint,
            )
        if not isinstance(obj.get("model"), dict):
            raise CheckpointError(
                f"{path} is neither a pcd teacher artifact nor a run checkpoint "
                f"({RunDir.BEST}/{RunDir.LAST})"
            )
        run, weights = RunDir(path.parent), path
    config = TrainConfig.model_validate(_run_config(run))
    loaded = _Loaded(
        model=nn.Identity(),
        description="",
        dataset=config.data.name if dataset is None else dataset,
        data_root=data_root or config.data.root,
        val_fraction=config.data.val_fraction,
        data_seed=config.data.seed,
        image_size=config.data.image_size,
    )
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist (the run has no finished epoch)")
    state = load_file(weights, "checkpoint")
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{weights} is not a run checkpoint ({RunDir.BEST}/{RunDir.LAST})")
    name = loaded.dataset
    train_data = loaded.load("train")
    model = build_model(
        config.arch, train_data.num_classes, train_data.channels, train_data.image_size[0]
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights}: the weights do not fit {config.arch} on {name} "
            f"({one_line(str(exc))[:200]})"
        ) from None
    epoch = state.get("epoch", "?")
    loaded.model = model
    loaded.description = f"{weights} ({config.method} {config.arch}, epoch {epoch})"
    return loaded


def _eval_split(loaded: _Loaded, split: str) -> tuple[ImageData, Any]:
    if split == "test" and loaded.fingerprint is None:
        return loaded.load("test"), None
    train_data = loaded.load("train")
    if loaded.fingerprint is not None and dataset_fingerprint(train_data) != loaded.fingerprint:
        raise CheckpointError(
            f"the model was trained on other data (fingerprint {loaded.fingerprint[:12]}) than "
            f"{loaded.dataset} here ({dataset_fingerprint(train_data)[:12]})"
        )
    if split == "test":
        return loaded.load("test"), None
    _, val_idx = train_val_split(train_data.labels, loaded.val_fraction, loaded.data_seed)
    if val_idx.numel() == 0:
        raise _UsageError("this run has no validation split (val_fraction 0); use --split test")
    return train_data, val_idx


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help=f"{RunDir.TEACHER}, a run folder, or a run's {RunDir.BEST} / {RunDir.LAST}"
        ),
    ],
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="default: the one the model was trained on")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="test, or val: the run's held-out part of train (for a teacher artifact "
            "outside its run folder, the default split: val fraction 0.1, data seed 0)",
        ),
    ] = "test",
    data_root: DataRootOpt = None,
    per_class: Annotated[
        bool, typer.Option("--per-class", help="also print per-class accuracy")
    ] = False,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="evaluation batch")] = 256,
    threads: ThreadsOpt = None,
) -> None:
    """Evaluate a teacher artifact or a student run: top-1/top-5 on test or val."""
    with _errors():
        _set_threads(threads)
        if split not in ("test", "val"):
            raise _UsageError(f"--split must be test or val, got {split!r}")
        if batch_size < 1:
            raise _UsageError(f"--batch-size must be at least 1, got {batch_size}")
        dev = _check_device(device)
        # --data-root typed on the command line wins over the run's recorded root; one from
        # PCD_DATA_ROOT only stands in for an image folder's root when none was recorded
        explicit = None if _root_from_env(ctx) else data_root
        loaded = _load_for_eval(checkpoint, dataset, explicit)
        if loaded.data_root is None and loaded.dataset == "image_folder":
            loaded.data_root = data_root
        data, indices = _eval_split(loaded, split)
        loader = DeviceLoader(
            data, indices, batch_size, shuffle=False, augment=False, seed=0, device=dev
        )
        model = loaded.model.to(dev).eval()
        try:
            logits, labels = predict(model, loader.epoch(0))
        except RuntimeError as exc:
            if isinstance(exc, torch.OutOfMemoryError):
                raise
            raise CheckpointError(
                f"the model does not accept {loaded.dataset} images ({one_line(str(exc))[:200]})"
            ) from None
        if logits.shape[1] != data.num_classes:
            raise CheckpointError(
                f"the model predicts {logits.shape[1]} classes, {loaded.dataset} has "
                f"{data.num_classes}"
            )
        metrics = classification_metrics(logits, labels, data.num_classes)
    typer.echo(f"evaluated: {loaded.description}")
    top1, top5 = float(metrics["top1"]), float(metrics["top5"])  # type: ignore[arg-type]
    typer.echo(
        f"{loaded.dataset} {split} ({labels.numel()} images): "
        f"top-1 {_pct(top1)}  top-5 {_pct(top5)}"
    )
    if per_class:
        counts = torch.bincount(labels.cpu(), minlength=data.num_classes).tolist()
        table = Table(title=f"per-class top-1, {loaded.dataset} {split}")
        table.add_column("class", justify="right", no_wrap=True)
        table.add_column("name", no_wrap=True)
        table.add_column("images", justify="right", no_wrap=True)
        table.add_column("top-1 %", justify="right", no_wrap=True)
        per: list[float] = metrics["per_class"]  # type: ignore[assignment]
        for i, (name, count, acc) in enumerate(zip(data.class_names, counts, per, strict=True)):
            table.add_row(str(i), escape(name), str(count), "n/a" if count == 0 else f"{acc:.2f}")
        _stdout().print(table)
