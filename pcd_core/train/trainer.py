"""The trainer: teacher training (CE) and student distillation with any registered method.

One run = one configuration. Per epoch: the method's loss terms, train top-1, val top-1/top-5,
per-class val accuracy and accuracy on the teacher's hard classes; a checkpoint every epoch
(exact resume); the best-on-val and last weights evaluated on test at the end, labelled as
such. pcd_core imports neither Ray nor MLflow: a search runner observes a run through
``on_epoch_end(metrics, checkpoint_dir)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pcd_core.data import (
    DatasetError,
    DeviceLoader,
    ImageData,
    StreamingImageFolder,
    StreamingLoader,
    default_augment,
    load_dataset,
    make_dataloader,
    train_val_split,
)
from pcd_core.methods import build_method
from pcd_core.models import build_model
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
from pcd_core.train.config import TrainConfig
from pcd_core.train.distiller import Distiller
from pcd_core.train.logit_bank import LogitBank, data_key
from pcd_core.train.metrics import classification_metrics, hard_classes, predict

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


class StopRun(Exception):
    """Raised by an ``on_epoch_end`` callback to stop the run after the current epoch."""


class NonFiniteLoss(RuntimeError):
    """The training loss (or the validation loss) became NaN or infinite: the run diverged.
    Raised before the epoch is checkpointed or reported, so the last checkpoint is sound."""


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
    augment: bool
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
        augment: bool,
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
            return make_dataloader(data, indices, batch_size, num_workers=self.num_workers, **kw)
        return DeviceLoader(data, indices, batch_size, **kw)


def folder_fingerprint(data: StreamingImageFolder) -> str:
    """sha256 of an image folder's relative paths, sizes and labels (not its pixels)."""
    digest = hashlib.sha256()
    root = Path(data.files[0]).parent.parent if data.files else Path(".")
    for path, label in zip(data.files, data.labels.tolist(), strict=True):
        p = Path(path)
        digest.update(f"{p.relative_to(root)}|{p.stat().st_size}|{label}\n".encode())
    return digest.hexdigest()


def _prepare(config: TrainConfig) -> _Setup:
    device = resolve_device(config.device)
    on_cuda = device.type == "cuda"
    kw: dict[str, Any] = {}
    if config.data.name == "image_folder":
        kw["image_size"] = config.data.image_size
    train: ImageData | StreamingImageFolder
    test: ImageData | StreamingImageFolder
    if config.data.streaming:
        if config.data.root is None:
            raise DatasetError("image_folder needs root: a folder with <split>/<class>/ images")
        train = StreamingImageFolder(config.data.root, "train", image_size=config.data.image_size)
        test = StreamingImageFolder(
            config.data.root,
            "test",
            image_size=config.data.image_size,
            mean=train.mean,
            std=train.std,
        )
        if test.class_names != train.class_names:
            raise DatasetError(
                f"{config.data.root}: test classes {test.class_names} differ from train "
                f"classes {train.class_names}"
            )
        fingerprint = folder_fingerprint(train)
    else:
        train = load_dataset(config.data.name, "train", config.data.root, **kw)
        test = load_dataset(config.data.name, "test", config.data.root, **kw)
        fingerprint = dataset_fingerprint(train)
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
        augment=default_augment(config.data.name)
        if config.data.augment is None
        else config.data.augment,
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
    if info.dataset != config.data.name or info.dataset_fingerprint != setup.fingerprint:
        raise CheckpointError(
            f"teacher was trained on {info.dataset} (fingerprint {info.dataset_fingerprint[:12]}),"
            f" this run uses {config.data.name} ({setup.fingerprint[:12]})"
        )
    if info.num_classes != setup.num_classes:
        raise CheckpointError(
            f"teacher predicts {info.num_classes} classes, the data has {setup.num_classes}"
        )


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    stop_after: int | None = None,
    progress: Callable[[int, int, EpochMetrics | None], None] | None = None,
) -> RunResult:
    """Run ``config``, writing checkpoints and metrics to ``out_dir``.

    ``resume`` continues from ``out_dir/last.pt`` when it exists (bit-identical on CPU to an
    uninterrupted run). ``stop_after`` ends the run after that epoch (a budget; the run can be
    resumed). ``progress(epoch, epochs, metrics)`` is called at the start (metrics None) and
    end of every epoch.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup = _prepare(config)
    device = setup.device
    num_classes = setup.num_classes
    method = build_method(config.method, config.method_options)
    method.check(num_classes)
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format

    teacher: nn.Module | None = None
    teacher_info: TeacherInfo | None = None
    if method.needs_teacher:
        assert config.teacher is not None
        teacher, teacher_info = load_teacher(
            config.teacher, expected_hash=config.teacher_hash, device=device
        )
        _check_teacher(teacher_info, setup, config)
        teacher = teacher.to(memory_format=memory_format)

    torch.manual_seed(config.seed)
    student = build_model(config.arch, num_classes, setup.channels, setup.image_side).to(
        device, memory_format=memory_format
    )
    distiller = Distiller(student, teacher, method)

    train_loader = _train_loader(config, setup)
    eval_bs = max(256, config.batch_size)
    val_loader = setup.loader(
        setup.train, setup.val_idx, eval_bs, shuffle=False, augment=False, seed=0
    )
    test_loader = setup.loader(setup.test, None, eval_bs, shuffle=False, augment=False, seed=0)

    has_val = len(val_loader.indices) > 0
    hard: Tensor | None = None
    if teacher is not None and has_val:
        t_logits, t_labels = predict(teacher, val_loader.epoch(0), amp=setup.amp)
        hard = hard_classes(t_logits, t_labels, num_classes, config.hard_class_fraction)

    bank: LogitBank | None = None
    if config.logit_bank is not None and teacher_info is not None:
        bank = _bank(config, setup, teacher_info, train_loader)

    optimizer = torch.optim.SGD(
        student.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestone_epochs(), gamma=config.lr_gamma
    )

    history: list[EpochMetrics] = []
    best_epoch, best_val = 0, -1.0
    start_epoch = 1
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    config_json = config.model_dump(mode="json")
    if resume and last_path.is_file():
        state = load_file(last_path, "run checkpoint")
        if state.get("format") != RUN_FORMAT or state.get("config") != config_json:
            raise CheckpointError(
                f"{last_path} belongs to a different run configuration; use another out_dir"
            )
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        history = [EpochMetrics(**h) for h in state["history"]]
        best_epoch, best_val = state["best_epoch"], state["best_val_top1"]
        start_epoch = state["epoch"] + 1
        # the metrics file holds exactly the checkpointed epochs (a crash may have left more)
        _write_metrics(out_dir, history)
    else:
        _write_metrics(out_dir, [])

    completed = True
    for epoch in range(start_epoch, config.epochs + 1):
        if progress is not None:
            progress(epoch, config.epochs, None)
        started = time.perf_counter()
        epoch_logits = (
            bank.get(epoch, teacher, train_loader, size=len(setup.train), amp=setup.amp)
            if bank is not None and teacher is not None
            else None
        )
        losses, train_top1 = _train_epoch(
            distiller, optimizer, train_loader, epoch, config.epochs, setup.amp, epoch_logits
        )
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if has_val:
            val_logits, val_labels = predict(student, val_loader.epoch(0), amp=setup.amp)
            val = classification_metrics(val_logits, val_labels, num_classes, hard)
        else:  # trained on the whole training split: nothing to select on, the last epoch counts
            val = {
                "top1": float("nan"),
                "top5": float("nan"),
                "loss": float("nan"),
                "per_class": [],
            }
        metrics = EpochMetrics(
            epoch=epoch,
            lr=lr,
            losses=losses,
            train_top1=train_top1,
            val_top1=float(val["top1"]),
            val_top5=float(val["top5"]),
            val_loss=float(val["loss"]),
            val_hard_top1=float(val["hard_top1"]) if "hard_top1" in val else None,
            val_per_class=list(val["per_class"]),  # type: ignore[arg-type]
            seconds=time.perf_counter() - started,
        )
        if has_val and not math.isfinite(metrics.val_loss):
            raise NonFiniteLoss(f"val_loss is {metrics.val_loss} at epoch {epoch}")
        if config.test_each_epoch:  # reporting only: never seen by a search
            metrics.test_top1 = float(
                _evaluate(student, test_loader, num_classes, None, setup.amp)["top1"]
            )
        history.append(metrics)
        if has_val and metrics.val_top1 > best_val:
            best_epoch, best_val = epoch, metrics.val_top1
            atomic_save({"model": student.state_dict(), "epoch": epoch}, best_path)
        atomic_save(
            {
                "format": RUN_FORMAT,
                "config": config_json,
                "epoch": epoch,
                "model": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "history": [asdict(h) for h in history],
                "best_epoch": best_epoch,
                "best_val_top1": best_val,
            },
            last_path,
        )
        with (out_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(asdict(metrics)) + "\n")
        if progress is not None:
            progress(epoch, config.epochs, metrics)
        stop = stop_after is not None and epoch >= stop_after and epoch < config.epochs
        if on_epoch_end is not None:
            try:
                on_epoch_end(metrics, out_dir)
            except StopRun:
                stop = epoch < config.epochs
        if stop:
            completed = False
            break

    result = RunResult(
        out_dir=out_dir,
        history=history,
        best_epoch=best_epoch,
        best_val_top1=best_val,
        completed=completed,
    )
    if not completed:
        return result

    # Final evaluation on test: the best-on-val weights and the last weights, labelled.
    last_test = _evaluate(student, test_loader, num_classes, hard, setup.amp)
    result.test = {"last": {"epoch": history[-1].epoch if history else 0, **last_test}}
    best_model, best_test = student, last_test
    if has_val:
        best_state = load_file(best_path, "best checkpoint")["model"]
        best_model = build_model(config.arch, num_classes, setup.channels, setup.image_side).to(
            device, memory_format=memory_format
        )
        best_model.load_state_dict(best_state)
        best_test = _evaluate(best_model, test_loader, num_classes, hard, setup.amp)
        result.test = {"best_val": {"epoch": best_epoch, **best_test}, **result.test}
    else:
        result.best_epoch = history[-1].epoch if history else 0
    tested = [h for h in history if h.test_top1 is not None]
    if config.test_each_epoch and tested:
        top = max(tested, key=lambda h: h.test_top1 or 0.0)
        result.test["best_test_epoch"] = {
            "epoch": top.epoch,
            "top1": top.test_top1,
            "selected_on": "test (the literature's best-epoch number; optimistic)",
        }
    if not method.needs_teacher:
        result.teacher_artifact = out_dir / "teacher.pt"
        result.teacher_hash = save_teacher(
            result.teacher_artifact,
            best_model,
            {
                "arch": config.arch,
                "num_classes": num_classes,
                "in_channels": setup.channels,
                "image_size": setup.image_side,
                "dataset": config.data.name,
                "dataset_fingerprint": setup.fingerprint,
                "test_top1": float(best_test["top1"]),
                "val_top1": best_val,
                "epochs": config.epochs,
            },
        )
    summary = {
        "config": config_json,
        "best_epoch": best_epoch,
        "best_val_top1": best_val,
        "test": result.test,
        "teacher": None if teacher_info is None else asdict(teacher_info),
        "teacher_artifact": str(result.teacher_artifact) if result.teacher_artifact else None,
        "teacher_hash": result.teacher_hash,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return result


def _write_metrics(out_dir: Path, history: list[EpochMetrics]) -> None:
    text = "".join(json.dumps(asdict(h)) + "\n" for h in history)
    (out_dir / "metrics.jsonl").write_text(text)


def _bank(config: TrainConfig, setup: _Setup, info: TeacherInfo, loader: DeviceLoader) -> LogitBank:
    assert config.logit_bank is not None
    key = data_key(
        dataset=setup.fingerprint,
        train=setup.train_idx.tolist(),
        seed=config.data.seed,
        augment=setup.augment,
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
    teacher, info = load_teacher(
        config.teacher, expected_hash=config.teacher_hash, device=setup.device
    )
    _check_teacher(info, setup, config)
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


def _train_epoch(
    distiller: Distiller,
    optimizer: torch.optim.Optimizer,
    loader: DeviceLoader,
    epoch: int,
    total_epochs: int,
    amp: bool,
    bank_logits: Tensor | None,
) -> tuple[dict[str, float], float]:
    """One pass over the training batches. Metrics accumulate on the device: no host sync
    inside the step (one transfer at the end of the epoch). NonFiniteLoss if the epoch's loss
    is NaN or infinite, naming the first step where it was."""
    distiller.train()
    sums: dict[str, Tensor] = {}
    totals: list[Tensor] = []  # each step's loss, kept on the device: read only on a non-finite
    correct = torch.zeros((), device=loader.device)
    seen = 0
    for batch in loader.epoch(epoch):
        teacher_logits = None if bank_logits is None else bank_logits[batch.index].float()
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits, losses = distiller.forward_train(
                batch.images,
                batch.labels,
                epoch=epoch,
                total_epochs=total_epochs,
                teacher_logits=teacher_logits,
            )
        loss = sum(losses.values())
        totals.append(loss.detach())  # type: ignore[union-attr]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        n = batch.labels.shape[0]
        seen += n
        for name, value in losses.items():
            term = value.detach() * n
            sums[name] = sums[name] + term if name in sums else term
        correct += (logits.detach().argmax(1) == batch.labels).sum()
    means = {name: v.item() / max(seen, 1) for name, v in sums.items()}
    means["total"] = sum(means.values())
    if not math.isfinite(means["total"]):
        raise NonFiniteLoss(_non_finite_message(means, epoch, _first_non_finite(totals)))
    return means, correct.item() / max(seen, 1) * 100


def _first_non_finite(totals: list[Tensor]) -> int:
    """The 1-based step of the first non-finite loss of an epoch (0: none). One transfer,
    made only once an epoch's loss is known to be non-finite."""
    if not totals:
        return 0
    bad = (~torch.isfinite(torch.stack(totals).float())).nonzero()
    return int(bad[0, 0]) + 1 if len(bad) else 0


def _non_finite_message(losses: dict[str, float], epoch: int, step: int) -> str:
    """For example "loss is nan at epoch 3, step 17 (ce=nan, kd=0.41)"."""
    terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items() if k != "total")
    where = f"epoch {epoch}, step {step}" if step else f"epoch {epoch}"
    return f"loss is {losses['total']} at {where} ({terms})"


def _evaluate(
    model: nn.Module, loader: DeviceLoader, num_classes: int, hard: Tensor | None, amp: bool
) -> dict[str, Any]:
    logits, labels = predict(model, loader.epoch(0), amp=amp)
    return classification_metrics(logits, labels, num_classes, hard)
