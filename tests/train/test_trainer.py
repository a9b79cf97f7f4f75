"""The trainer on real (digits) data: every method learns, checkpoints, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pcd_core.methods import build_method, needs_teacher
from pcd_core.models import build_model
from pcd_core.train import (
    CheckpointError,
    Distiller,
    NonFiniteLoss,
    StopRun,
    TrainConfig,
    load_teacher,
    train,
)
from pcd_core.train.metrics import classification_metrics, hard_classes


def test_teacher_artifact_records_itself(digits_teacher: Path) -> None:
    model, info = load_teacher(digits_teacher)
    assert info.arch == "cnn_small" and info.num_classes == 10 and info.dataset == "digits"
    assert info.test_top1 > 85  # 4 epochs of a small CNN on digits
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training
    summary = json.loads((digits_teacher.parent / "summary.json").read_text())
    assert summary["teacher_hash"] == info.content_hash
    assert summary["test"]["best_val"]["epoch"] == summary["best_epoch"]


@pytest.mark.parametrize(
    "method,options",
    [("ce", {}), ("kd", {}), ("dkd", {"warmup": 1}), ("pcd", {"warmup": 1})],
)
def test_each_method_learns_and_checkpoints(digits_teacher, tmp_path, method, options) -> None:
    config = TrainConfig(
        arch="mlp_32",
        epochs=4,
        lr=0.01,
        method=method,
        method_options=options,
        teacher=digits_teacher if needs_teacher(method) else None,
    )
    result = train(config, tmp_path)
    first, best = result.history[0].val_top1, result.best_val_top1
    assert best > 70, [h.val_top1 for h in result.history]
    assert best >= first
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4
    assert set(result.test) == {"best_val", "last"}
    assert result.test["best_val"]["epoch"] == result.best_epoch
    assert result.test["last"]["epoch"] == 4
    expected_terms = {"ce": {"ce"}, "kd": {"ce", "kd"}, "dkd": {"ce", "tckd", "nckd"}}
    terms = set(result.history[-1].losses) - {"total"}
    assert terms == expected_terms.get(method, {"ce", "pcd"})
    if needs_teacher(method):
        assert result.history[-1].val_hard_top1 is not None


def test_resume_is_bit_identical(digits_teacher, tmp_path) -> None:
    config = TrainConfig(
        arch="mlp_32",
        epochs=4,
        lr=0.01,
        method="pcd",
        teacher=digits_teacher,
        method_options={"warmup": 2},
    )
    full = train(config, tmp_path / "full")
    partial = train(config, tmp_path / "split", stop_after=2)
    assert not partial.completed and len(partial.history) == 2
    resumed = train(config, tmp_path / "split", resume=True)
    assert resumed.completed and [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h.losses for h in full.history] == [h.losses for h in resumed.history]
    assert full.test["last"]["top1"] == resumed.test["last"]["top1"]


def test_resume_refuses_another_configuration(digits_teacher, tmp_path) -> None:
    config = TrainConfig(arch="mlp_32", epochs=3, lr=0.01)
    train(config, tmp_path, stop_after=1)
    other = TrainConfig(arch="mlp_32", epochs=3, lr=0.02)
    with pytest.raises(CheckpointError, match="different run configuration") as err:
        train(other, tmp_path, resume=True)
    assert "(lr: 0.01 in the checkpoint, 0.02 now); resume it with the options" in str(err.value)


def test_callback_can_stop_a_run(tmp_path) -> None:
    seen = []

    def on_epoch_end(metrics, checkpoint_dir):
        seen.append((metrics.epoch, checkpoint_dir))
        if metrics.epoch == 2:
            raise StopRun

    result = train(
        TrainConfig(arch="mlp_32", epochs=5, lr=0.01), tmp_path, on_epoch_end=on_epoch_end
    )
    assert [e for e, _ in seen] == [1, 2] and seen[0][1] == tmp_path
    assert not result.completed and result.test == {}


def test_a_diverging_run_fails_naming_epoch_and_step(tmp_path) -> None:
    """lr 10 with momentum 0.99 sends cnn_small's loss to NaN within the first epoch: the run
    fails saying where, before that epoch is checkpointed or reported."""
    reported = []
    config = TrainConfig(arch="cnn_small", epochs=2, lr=10.0, momentum=0.99, weight_decay=0.0)
    with pytest.raises(NonFiniteLoss, match=r"^loss is (nan|inf) at epoch 1, step \d+ \(ce="):
        train(config, tmp_path, on_epoch_end=lambda m, _: reported.append(m))
    assert reported == [] and not (tmp_path / "last.pt").exists()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_teacher_is_frozen_by_construction(digits_teacher) -> None:
    teacher, _ = load_teacher(digits_teacher)
    student = build_model("mlp_32", 10, 1, 8)
    distiller = Distiller(student, teacher, build_method("kd"))
    distiller.train()
    assert student.training and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    # the teacher is not part of the trainable module: optimisers and checkpoints skip it
    assert {id(p) for p in distiller.parameters()} == {id(p) for p in student.parameters()}
    assert all(k.startswith("student.") for k in distiller.state_dict())
    x = torch.randn(4, 1, 8, 8)
    logits, losses = distiller.forward_train(x, torch.tensor([0, 1, 2, 3]), epoch=1, total_epochs=2)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert logits.shape == (4, 10)


def test_teacher_verification(digits_teacher, tmp_path) -> None:
    _, info = load_teacher(digits_teacher)
    load_teacher(digits_teacher, expected_hash=info.content_hash[:12])
    with pytest.raises(CheckpointError, match="not the requested"):
        load_teacher(digits_teacher, expected_hash="0123456789ab")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_teacher(corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_teacher(tmp_path / "missing.pt")
    # tampered weights no longer match the recorded hash
    obj = torch.load(digits_teacher, weights_only=True)
    key = next(iter(obj["state_dict"]))
    obj["state_dict"][key] = obj["state_dict"][key] + 1
    torch.save(obj, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_teacher(tmp_path / "tampered.pt")


def test_logit_bank_is_built_once_and_matches_the_teacher(digits_teacher, tmp_path) -> None:
    config = TrainConfig(
        arch="mlp_32",
        epochs=2,
        lr=0.01,
        method="kd",
        teacher=digits_teacher,
        logit_bank=tmp_path / "bank",
    )
    with_bank = train(config, tmp_path / "a")
    files = sorted((tmp_path / "bank").rglob("epoch_*.pt"))
    assert [f.name for f in files] == ["epoch_0001.pt", "epoch_0002.pt"]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = train(config, tmp_path / "b")
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not rebuilt
    assert [h.losses for h in again.history] == [h.losses for h in with_bank.history]
    without = train(config.model_copy(update={"logit_bank": None}), tmp_path / "c")
    for a, b in zip(with_bank.history, without.history, strict=True):
        # fp16 teacher logits: the same run up to fp16 rounding of the teacher's logits
        assert a.losses["kd"] == pytest.approx(b.losses["kd"], rel=2e-2)


def test_hard_classes_and_metrics() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    teacher = torch.full((10, 5), -5.0)
    teacher[torch.arange(10), labels] = 5.0
    teacher[2:4, 1] = 0.0  # class 1: the teacher is unsure
    hard = hard_classes(teacher, labels, 5, 0.2)
    assert hard.tolist() == [1]
    student = teacher.clone()
    student[2, 1] = -10.0  # wrong on one sample of class 1
    m = classification_metrics(student, labels, 5, hard)
    assert m["top1"] == pytest.approx(90.0)
    assert m["hard_top1"] == pytest.approx(50.0)
    assert m["per_class"][1] == pytest.approx(50.0) and m["per_class"][0] == 100.0


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="needs a teacher"):
        TrainConfig(arch="mlp_32", method="kd")
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        TrainConfig(arch="resnet9")
    with pytest.raises(ValueError, match="unknown option 'temprature'"):
        TrainConfig(
            arch="mlp_32", method="pcd", teacher=Path("t.pt"), method_options={"temprature": 4}
        )
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig(arch="mlp_32", data={"name": "imagenet"})
    assert TrainConfig(arch="MobileNetV2").learning_rate == 0.01
    assert TrainConfig(arch="resnet8x4").learning_rate == 0.05
    assert TrainConfig(arch="resnet8x4", epochs=240).milestone_epochs() == [150, 180, 210]


def test_training_on_the_whole_split_reports_the_last_epoch(tmp_path) -> None:
    config = TrainConfig(arch="mlp_32", epochs=2, lr=0.01, data={"val_fraction": 0.0})
    result = train(config, tmp_path)
    assert set(result.test) == {"last"} and result.best_epoch == 2
    assert result.test["last"]["top1"] > 50
    assert not (tmp_path / "best.pt").exists()


def test_prefilled_bank_covers_every_epoch(digits_teacher, tmp_path) -> None:
    from pcd_core.train import prefill_logit_bank

    config = TrainConfig(
        arch="mlp_32", epochs=3, method="kd", teacher=digits_teacher, logit_bank=tmp_path
    )
    assert prefill_logit_bank(config) == 3
    assert prefill_logit_bank(config) == 0  # already there
    assert len(list(tmp_path.rglob("epoch_*.pt"))) == 3


def _image_folder(root: Path, per_class: int = 12) -> Path:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for label, name in enumerate(("red", "green", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 80, (8, 8, 3), generator=gen, dtype=torch.uint8)
                pixels[..., label] += 150  # learnable: the class is the dominant colour
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return root


def test_streaming_image_folder_trains_like_the_in_memory_path(tmp_path) -> None:
    root = _image_folder(tmp_path / "folder")
    common = dict(name="image_folder", root=root, image_size=8, val_fraction=0.25)
    in_memory = train(TrainConfig(arch="mlp_32", epochs=2, lr=0.05, data=common), tmp_path / "mem")
    streaming = train(
        TrainConfig(
            arch="mlp_32", epochs=2, lr=0.05, data={**common, "streaming": True, "num_workers": 0}
        ),
        tmp_path / "stream",
    )
    # the same batches, decoded lazily: the same run
    assert [h.losses for h in streaming.history] == [h.losses for h in in_memory.history]
    assert streaming.test["last"]["top1"] == in_memory.test["last"]["top1"]
    assert streaming.best_val_top1 > 50


def test_a_checkpoint_written_before_named_augmentations_resumes(tmp_path) -> None:
    """A run checkpointed when augment was a bool-or-null and image_size 32 for every data set
    resumes under today's config (same meaning); a changed meaning is named."""
    config = TrainConfig(arch="mlp_32", epochs=2, lr=0.01)
    train(config, tmp_path, stop_after=1)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    state["config"]["data"].update(augment=None, image_size=32)  # as the old trainer wrote it
    torch.save(state, tmp_path / "last.pt")
    assert train(config, tmp_path, resume=True).completed
    state["config"]["data"]["augment"] = True  # an old run that cropped and flipped digits
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as err:
        train(config, tmp_path, resume=True)
    assert "configuration (data.augment: 'crop+flip' in the checkpoint, 'none' now);" in str(
        err.value
    )
