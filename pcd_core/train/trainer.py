"""The trainer: teacher training (CE) and student distillation with any registered method.

One run = one configuration. Per epoch: the method's loss terms, train top-1, val top-1/top-5,
per-class val accuracy and accuracy on the teacher's hard classes; a checkpoint every epoch
(exact resume); the best-on-val and last weights evaluated on test at the end, labelled as
such. pcd_core imports neither Ray nor MLflow: a search runner observes a run through
``on_epoch_end(metrics, checkpoint_dir)``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pcd_core.data import (
    Augment,
    DatasetError,
    DeviceLoader,
    ImageData,
    StreamingImageFolder,
    StreamingLoader,
    load_dataset,
    train_val_split,
)
from pcd_core.data.datasets import IMAGE_FOLDER_NEEDS_ROOT
from pcd_core.methods import Method, build_method
from pcd_core.models import build_model
from pcd_core.run_dir import RunDir, RunSummary
from pcd_core.train.checkpoint import (
    CheckpointError,
    TeacherInfo,
    atomic_save,
    load_file,
    load_teacher,
    rng_state,
    save_teacher,
    set_rng_state,
)
from pcd_core.train.config import TrainConfig, stored_config
from pcd_core.train.distiller import Distiller
from pcd_core.train.logit_bank import LogitBank, data_key
from pcd_core.train.metrics import classification_metrics, hard_classes, predict
from pcd_core.train.step import NonFiniteLoss, train_epoch

RUN_FORMAT = "pcd-run/1"


@dataclass
class EpochMetrics:
    """What one epoch measured (val metrics only: test is read at the end)."""

    epoch: int
    lr: float
    losses: dict[str, float]
    train_top1: float
    val_top1: float
    val_top5: float
    val_loss: float
    val_hard_top1: float | None
    val_per_class: list[float]
    seconds: float
    test_top1: float | None = None  # only with TrainConfig.test_each_epoch; not in scalars()

    def scalars(self) -> dict[str, float]:
        """Flat scalar metrics (for logging)."""
        out = {
            "lr": self.lr,
            "train_top1": self.train_top1,
            "val_top1": self.val_top1,
            "val_top5": self.val_top5,
            "val_loss": self.val_loss,
            "epoch_seconds": self.seconds,
        }
        if self.val_hard_top1 is not None:
            out["val_hard_top1"] = self.val_hard_top1
        out.update({f"loss_{k}": v for k, v in self.losses.items()})
        return out


@dataclass
class RunResult:
    """A finished (or stopped) run."""

    out_dir: Path
    history: list[EpochMetrics]
    best_epoch: int
    best_val_top1: float
    test: dict[str, dict[str, Any]] = field(default_factory=dict)  # "best_val" / "last"
    teacher_artifact: Path | None = None
    teacher_hash: str | None = None
    completed: bool = True
    hard_classes: list[int] | None = None  # the teacher's hard classes on val (distillers)


class StopRun(Exception):
    """Raised by an ``on_epoch_end`` callback to stop the run after the current epoch."""


EpochCallback = Callable[[EpochMetrics, Path], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but no CUDA device is available")
    return device


def dataset_fingerprint(data: ImageData) -> str:
    """sha256 of the images and labels of a split (identifies the data a model saw)."""
    digest = hashlib.sha256()
    digest.update(data.images.numpy().tobytes())
    digest.update(data.labels.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class _Setup:
    device: torch.device
    amp: bool
    channels_last: bool
    train: ImageData | StreamingImageFolder
    test: ImageData | StreamingImageFolder
    train_idx: Tensor
    val_idx: Tensor
    fingerprint: str
    augment: Augment
    num_workers: int = 0

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_side(self) -> int:
        data = self.train
        return data.size[0] if isinstance(data, StreamingImageFolder) else data.image_size[0]

    def loader(
        self,
        data: ImageData | StreamingImageFolder,
        indices: Tensor | None,
        batch_size: int,
        *,
        shuffle: bool,
        augment: Augment | bool,
        seed: int,
    ) -> DeviceLoader | StreamingLoader:
        """Held on the device (in-memory data) or decoded in workers (streaming folders)."""
        kw = dict(
            shuffle=shuffle,
            augment=augment,
            seed=seed,
            device=self.device,
            channels_last=self.channels_last,
        )
        if isinstance(data, StreamingImageFolder):
            return StreamingLoader(data, indices, batch_size, num_workers=self.num_workers, **kw)
        return DeviceLoader(data, indices, batch_size, **kw)


def folder_fingerprint(data: StreamingImageFolder) -> str:
    """sha256 of an image folder's relative paths, sizes and labels (not its pixels)."""
    digest = hashlib.sha256()
    root = Path(data.files[0]).parent.parent if data.files else Path(".")
    for path, label in zip(data.files, data.labels.tolist(), strict=True):
        p = Path(path)
        digest.update(f"{p.relative_to(root)}|{p.stat().st_size}|{label}\n".encode())
    return digest.hexdigest()


def _load_data(
    config: TrainConfig,
) -> tuple[ImageData | StreamingImageFolder, ImageData | StreamingImageFolder, str]:
    """The train and test splits (in memory, or streamed image folders) and the train
    split's fingerprint."""
    data = config.data
    if data.name == "image_folder" and data.root is None:
        raise DatasetError(IMAGE_FOLDER_NEEDS_ROOT)
    if not data.streaming:
        kw: dict[str, Any] = {}
        if data.name == "image_folder":
            kw["image_size"] = data.image_size
        train = load_dataset(data.name, "train", data.root, **kw)
        test = load_dataset(data.name, "test", data.root, **kw)
        return train, test, dataset_fingerprint(train)
    assert data.root is not None
    s_train = StreamingImageFolder(data.root, "train", image_size=data.image_size)
    # the test images are held to the train images' size (checked, not resized, by default)
    s_test = StreamingImageFolder(
        data.root, "test", image_size=data.image_size, mean=s_train.mean, std=s_train.std
    )
    if s_test.class_names != s_train.class_names:
        raise DatasetError(
            f"{data.root}: test classes {s_test.class_names} differ from train "
            f"classes {s_train.class_names}"
        )
    return s_train, s_test, folder_fingerprint(s_train)


def _square_side(data: ImageData | StreamingImageFolder) -> None:
    """Models take one side: an image folder's own size must be square."""
    h, w = data.size if isinstance(data, StreamingImageFolder) else data.image_size
    if h != w:
        raise DatasetError(
            f"the images are {h}x{w} (height x width), not square; pass --image-size N "
            "(image_size: N) to resize them to NxN"
        )


def _prepare(config: TrainConfig) -> _Setup:
    device = resolve_device(config.device)
    on_cuda = device.type == "cuda"
    train, test, fingerprint = _load_data(config)
    _square_side(train)
    train_idx, val_idx = train_val_split(train.labels, config.data.val_fraction, config.data.seed)
    return _Setup(
        device=device,
        amp=on_cuda if config.amp is None else config.amp,
        channels_last=on_cuda if config.channels_last is None else config.channels_last,
        train=train,
        test=test,
        train_idx=train_idx,
        val_idx=val_idx,
        fingerprint=fingerprint,
        augment=config.data.augmentation,
        num_workers=config.data.num_workers,
    )


def _train_loader(config: TrainConfig, setup: _Setup) -> DeviceLoader | StreamingLoader:
    """The training batches: shuffled and augmented as a function of (data seed, epoch)."""
    return setup.loader(
        setup.train,
        setup.train_idx,
        config.batch_size,
        shuffle=True,
        augment=setup.augment,
        seed=config.data.seed,
    )


def _check_teacher(info: TeacherInfo, setup: _Setup, config: TrainConfig) -> None:
    if info.image_size != setup.image_side:
        side = setup.image_side
        raise CheckpointError(
            f"teacher was trained on {info.image_size}x{info.image_size} images, this run's are "
            f"{side}x{side}; pass --image-size {info.image_size} (image_size: {info.image_size})"
        )
    if info.dataset != config.data.name or info.dataset_fingerprint != setup.fingerprint:
        raise CheckpointError(
            f"teacher was trained on {info.dataset} (fingerprint {info.dataset_fingerprint[:12]}),"
            f" this run uses {config.data.name} ({setup.fingerprint[:12]})"
        )
    if info.num_classes != setup.num_classes:
        raise CheckpointError(
            f"teacher predicts {info.num_classes} classes, the data has {setup.num_classes}"
        )


@dataclass
class _Run:
    """Everything one run holds while it trains: set up by :func:`_start`."""

    config: TrainConfig
    run_dir: RunDir
    setup: _Setup
    method: Method
    teacher: nn.Module | None
    teacher_info: TeacherInfo | None
    student: nn.Module
    distiller: Distiller
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DeviceLoader | StreamingLoader
    val_loader: DeviceLoader | StreamingLoader
    test_loader: DeviceLoader | StreamingLoader
    hard: Tensor | None  # the teacher's hard classes on val (students with a val split)
    bank: LogitBank | None
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = -1.0

    @property
    def has_val(self) -> bool:
        return len(self.val_loader.indices) > 0

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.setup.channels_last else torch.contiguous_format

    def new_student(self) -> nn.Module:
        setup = self.setup
        model = build_model(self.config.arch, setup.num_classes, setup.channels, setup.image_side)
        return model.to(setup.device, memory_format=self.memory_format)


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    stop_after: int | None = None,
    progress: Callable[[int, int, EpochMetrics | None], None] | None = None,
) -> RunResult:
    """Run ``config``, writing checkpoints and metrics to ``out_dir`` (a :class:`RunDir`).

    ``resume`` continues from the run folder's last checkpoint when it exists (bit-identical
    on CPU to an uninterrupted run). ``stop_after`` ends the run after that epoch (a budget;
    the run can be resumed). ``progress(epoch, epochs, metrics)`` is called at the start
    (metrics None) and end of every epoch.
    """
    # The folder is made once the data, the teacher and the model are ready: a run that
    # fails to set up leaves nothing behind.
    run = _start(config, RunDir(out_dir))
    run.run_dir.create()
    start_epoch = _restore(run) if resume and run.run_dir.has_checkpoint() else _fresh(run)
    completed = True
    for epoch in range(start_epoch, config.epochs + 1):
        if progress is not None:
            progress(epoch, config.epochs, None)
        metrics = _run_epoch(run, epoch)
        _save_epoch(run, metrics)
        if progress is not None:
            progress(epoch, config.epochs, metrics)
        if _stops(run, metrics, on_epoch_end, stop_after):
            completed = False
            break
    result = RunResult(
        out_dir=run.run_dir.path,
        history=run.history,
        best_epoch=run.best_epoch,
        best_val_top1=run.best_val,
        completed=completed,
    )
    if completed:
        _finish(run, result)
    return result


# ------------------------------------------------------------------------------------ set-up
def _start(config: TrainConfig, run_dir: RunDir) -> _Run:
    """Data, teacher, student, loaders, optimiser: the order fixes the random streams."""
    setup = _prepare(config)
    method = build_method(config.method, config.method_options)
    method.check(setup.num_classes)
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format
    teacher, teacher_info = None, None
    if method.needs_teacher:
        teacher, teacher_info = _checked_teacher(config, setup)
        teacher = teacher.to(memory_format=memory_format)
    torch.manual_seed(config.seed)
    student = build_model(config.arch, setup.num_classes, setup.channels, setup.image_side).to(
        setup.device, memory_format=memory_format
    )
    train_loader = _train_loader(config, setup)
    eval_bs = max(256, config.batch_size)
    val_loader = setup.loader(
        setup.train, setup.val_idx, eval_bs, shuffle=False, augment=False, seed=0
    )
    optimizer = torch.optim.SGD(
        student.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    return _Run(
        config=config,
        run_dir=run_dir,
        setup=setup,
        method=method,
        teacher=teacher,
        teacher_info=teacher_info,
        student=student,
        distiller=Distiller(student, teacher, method),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=config.milestone_epochs(), gamma=config.lr_gamma
        ),
        train_loader=train_loader,
        val_loader=val_loader,
        test_loader=setup.loader(setup.test, None, eval_bs, shuffle=False, augment=False, seed=0),
        hard=_teacher_hard_classes(config, setup, teacher, val_loader),
        bank=None
        if config.logit_bank is None or teacher_info is None
        else _bank(config, setup, teacher_info, train_loader),
    )


def _checked_teacher(config: TrainConfig, setup: _Setup) -> tuple[nn.Module, TeacherInfo]:
    """The run's teacher, its hash verified and its training data the run's data."""
    assert config.teacher is not None
    teacher, info = load_teacher(
        config.teacher, expected_hash=config.teacher_hash, device=setup.device
    )
    _check_teacher(info, setup, config)
    return teacher, info


def _teacher_hard_classes(
    config: TrainConfig,
    setup: _Setup,
    teacher: nn.Module | None,
    val_loader: DeviceLoader | StreamingLoader,
) -> Tensor | None:
    """The classes the teacher finds hardest on val (none without a teacher or a val split)."""
    if teacher is None or len(val_loader.indices) == 0:
        return None
    t_logits, t_labels = predict(teacher, val_loader.epoch(0), amp=setup.amp)
    return hard_classes(t_logits, t_labels, setup.num_classes, config.hard_class_fraction)


def _fresh(run: _Run) -> int:
    """A new run: an empty metrics file. Returns the first epoch."""
    run.run_dir.write_metrics([])
    return 1


def _restore(run: _Run) -> int:
    """Continue from the run folder's last checkpoint. Returns the first epoch to train."""
    last = run.run_dir.last
    state = load_file(last, "run checkpoint")
    stored = state.get("config")
    if state.get("format") != RUN_FORMAT or not isinstance(stored, dict):
        raise CheckpointError(f"{last} is not a pcd run checkpoint; use another out_dir")
    differences = config_differences(stored_config(stored), _config_json(run.config))
    if differences:
        raise CheckpointError(
            f"{last} belongs to a different run configuration ({'; '.join(differences[:4])}); "
            "resume it with the options it was started with, or use another out_dir"
        )
    run.student.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    run.history = [EpochMetrics(**h) for h in state["history"]]
    run.best_epoch, run.best_val = state["best_epoch"], state["best_val_top1"]
    # the metrics file holds exactly the checkpointed epochs (a crash may have left more)
    run.run_dir.write_metrics(asdict(h) for h in run.history)
    return int(state["epoch"]) + 1


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def config_differences(was: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``"field: X in the checkpoint, Y now"`` for every (nested) field where two config
    dicts differ."""
    out: list[str] = []
    for key in sorted(set(was) | set(now)):
        a, b = was.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} in the checkpoint, {b!r} now")
    return out


# -------------------------------------------------------------------------------- epoch loop
def _run_epoch(run: _Run, epoch: int) -> EpochMetrics:
    """Train one epoch, step the learning rate, measure on val."""
    started = time.perf_counter()
    setup, epochs = run.setup, run.config.epochs
    bank_logits = (
        run.bank.get(epoch, run.teacher, run.train_loader, size=len(setup.train), amp=setup.amp)
        if run.bank is not None and run.teacher is not None
        else None
    )
    losses, train_top1 = train_epoch(
        run.distiller,
        run.optimizer,
        run.train_loader,
        epoch=epoch,
        total_epochs=epochs,
        amp=setup.amp,
        bank_logits=bank_logits,
    )
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    val = _validate(run)
    metrics = EpochMetrics(
        epoch=epoch,
        lr=lr,
        losses=losses,
        train_top1=train_top1,
        val_top1=float(val["top1"]),
        val_top5=float(val["top5"]),
        val_loss=float(val["loss"]),
        val_hard_top1=float(val["hard_top1"]) if "hard_top1" in val else None,
        val_per_class=list(val["per_class"]),
        seconds=time.perf_counter() - started,
    )
    if run.has_val and not math.isfinite(metrics.val_loss):
        raise NonFiniteLoss(f"val_loss is {metrics.val_loss} at epoch {epoch}")
    if run.config.test_each_epoch:  # reporting only: never seen by a search
        test = _evaluate(run.student, run.test_loader, setup.num_classes, None, setup.amp)
        metrics.test_top1 = float(test["top1"])
    return metrics


def _validate(run: _Run) -> dict[str, Any]:
    if not run.has_val:  # trained on the whole training split: nothing to select on
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan"), "per_class": []}
    logits, labels = predict(run.student, run.val_loader.epoch(0), amp=run.setup.amp)
    return classification_metrics(logits, labels, run.setup.num_classes, run.hard)


def _save_epoch(run: _Run, metrics: EpochMetrics) -> None:
    """Record the epoch: best-on-val weights, the exact-resume checkpoint, the metrics line."""
    run.history.append(metrics)
    epoch = metrics.epoch
    if run.has_val and metrics.val_top1 > run.best_val:
        run.best_epoch, run.best_val = epoch, metrics.val_top1
        atomic_save({"model": run.student.state_dict(), "epoch": epoch}, run.run_dir.best)
    atomic_save(
        {
            "format": RUN_FORMAT,
            "config": _config_json(run.config),
            "epoch": epoch,
            "model": run.student.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": rng_state(),
            "history": [asdict(h) for h in run.history],
            "best_epoch": run.best_epoch,
            "best_val_top1": run.best_val,
        },
        run.run_dir.last,
    )
    run.run_dir.append_metrics(asdict(metrics))


def _stops(
    run: _Run, metrics: EpochMetrics, on_epoch_end: EpochCallback | None, stop_after: int | None
) -> bool:
    """Whether the run stops before its last epoch (a budget, or the callback's StopRun)."""
    epoch, epochs = metrics.epoch, run.config.epochs
    stop = stop_after is not None and epoch >= stop_after and epoch < epochs
    if on_epoch_end is not None:
        try:
            on_epoch_end(metrics, run.run_dir.path)
        except StopRun:
            stop = epoch < epochs
    return stop


# ---------------------------------------------------------------------------- end of the run
def _finish(run: _Run, result: RunResult) -> None:
    """Test the best-on-val and last weights (labelled), save a teacher, write the summary."""
    best_model, best_test = _final_test(run, result)
    if not run.method.needs_teacher:
        result.teacher_artifact = run.run_dir.teacher
        result.teacher_hash = _save_teacher(run, best_model, best_test)
    run.run_dir.write_summary(
        RunSummary(
            config=_config_json(run.config),
            best_epoch=run.best_epoch,
            best_val_top1=run.best_val,
            test=result.test,
            teacher=None if run.teacher_info is None else asdict(run.teacher_info),
            teacher_artifact=str(result.teacher_artifact) if result.teacher_artifact else None,
            teacher_hash=result.teacher_hash,
        )
    )


def _final_test(run: _Run, result: RunResult) -> tuple[nn.Module, dict[str, Any]]:
    """Fill ``result.test``; returns the selected model (best-on-val, else last) and its test."""
    num_classes, amp, history = run.setup.num_classes, run.setup.amp, run.history
    last_test = _evaluate(run.student, run.test_loader, num_classes, run.hard, amp)
    result.hard_classes = None if run.hard is None else [int(c) for c in run.hard.tolist()]
    result.test = {"last": {"epoch": history[-1].epoch if history else 0, **last_test}}
    best_model, best_test = run.student, last_test
    if run.has_val:
        best_model = run.new_student()
        best_model.load_state_dict(load_file(run.run_dir.best, "best checkpoint")["model"])
        best_test = _evaluate(best_model, run.test_loader, num_classes, run.hard, amp)
        result.test = {"best_val": {"epoch": run.best_epoch, **best_test}, **result.test}
    else:
        result.best_epoch = history[-1].epoch if history else 0
    tested = [h for h in history if h.test_top1 is not None]
    if run.config.test_each_epoch and tested:
        top = max(tested, key=lambda h: h.test_top1 or 0.0)
        result.test["best_test_epoch"] = {
            "epoch": top.epoch,
            "top1": top.test_top1,
            "selected_on": "test (the literature's best-epoch number; optimistic)",
        }
    return best_model, best_test


def _save_teacher(run: _Run, model: nn.Module, test: dict[str, Any]) -> str:
    """Write the run's teacher artifact; returns its content hash."""
    config, setup = run.config, run.setup
    return save_teacher(
        run.run_dir.teacher,
        model,
        {
            "arch": config.arch,
            "num_classes": setup.num_classes,
            "in_channels": setup.channels,
            "image_size": setup.image_side,
            "dataset": config.data.name,
            "dataset_fingerprint": setup.fingerprint,
            "test_top1": float(test["top1"]),
            "val_top1": run.best_val,
            "epochs": config.epochs,
        },
    )


def _bank(config: TrainConfig, setup: _Setup, info: TeacherInfo, loader: DeviceLoader) -> LogitBank:
    assert config.logit_bank is not None
    key = data_key(
        dataset=setup.fingerprint,
        train=setup.train_idx.tolist(),
        seed=config.data.seed,
        # the names of the modes that existed as booleans keep their banks' keys
        augment={"crop+flip": True, "none": False}.get(setup.augment, setup.augment),
        pad=loader.pad,
        amp=setup.amp,
    )
    return LogitBank(config.logit_bank, info.content_hash, key)


def prefill_logit_bank(config: TrainConfig) -> int:
    """Compute the teacher's logits for every epoch of ``config`` into its logit bank, once,
    before the trials of a study read them. Returns the number of epochs computed."""
    if config.logit_bank is None or config.teacher is None:
        raise ValueError("prefill_logit_bank needs a config with teacher and logit_bank")
    setup = _prepare(config)
    teacher, info = _checked_teacher(config, setup)
    if setup.channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    loader = _train_loader(config, setup)
    bank = _bank(config, setup, info, loader)
    built = 0
    for epoch in range(1, config.epochs + 1):
        if not bank.has(epoch):
            bank.build(epoch, teacher, loader, size=len(setup.train), amp=setup.amp)
            built += 1
    return built


def _evaluate(
    model: nn.Module, loader: DeviceLoader, num_classes: int, hard: Tensor | None, amp: bool
) -> dict[str, Any]:
    logits, labels = predict(model, loader.epoch(0), amp=amp)
    return classification_metrics(logits, labels, num_classes, hard)
