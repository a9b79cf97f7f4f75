"""Checkpoints: per-epoch run state (exact resume) and teacher artifacts with a content hash."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pcd_core.models import build_model

TEACHER_FORMAT = "pcd-teacher/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or not the one asked for."""


def content_hash(state_dict: dict[str, Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_file(path: Path, what: str) -> dict[str, Any]:
    """torch.load with weights_only (no code can run) and a clear error."""
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a torch file
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{what} {path} is not a readable checkpoint ({type(err).__name__}: {reason[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {path} has an unexpected layout")
    return obj


# ---------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every RNG a run touches, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------- teachers
@dataclass(frozen=True)
class TeacherInfo:
    """What a teacher artifact records about itself."""

    arch: str
    num_classes: int
    in_channels: int
    image_size: int
    dataset: str
    dataset_fingerprint: str
    content_hash: str
    test_top1: float
    val_top1: float
    epochs: int


def save_teacher(path: Path, model: nn.Module, info: dict[str, Any]) -> str:
    """Write a teacher artifact; returns its content hash (of the weights alone)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = content_hash(state)
    atomic_save(
        {"format": TEACHER_FORMAT, **info, "content_hash": digest, "state_dict": state}, path
    )
    return digest


def load_teacher(
    path: Path, *, expected_hash: str | None = None, device: torch.device | str = "cpu"
) -> tuple[nn.Module, TeacherInfo]:
    """Load and verify a teacher: its weights must hash to the recorded value, and to
    ``expected_hash`` (a prefix is enough) when the caller names the teacher it wants."""
    obj = load_file(Path(path), "teacher checkpoint")
    if obj.get("format") != TEACHER_FORMAT:
        raise CheckpointError(
            f"teacher checkpoint {path} is not a pcd teacher artifact (write one with "
            "`pcd teacher train`)"
        )
    state = obj["state_dict"]
    digest = content_hash(state)
    if digest != obj["content_hash"]:
        raise CheckpointError(
            f"teacher checkpoint {path} is corrupt: its weights hash to {digest[:12]}, "
            f"the file records {obj['content_hash'][:12]}"
        )
    if expected_hash is not None and not digest.startswith(expected_hash):
        raise CheckpointError(
            f"teacher checkpoint {path} has hash {digest[:12]}, not the requested "
            f"{expected_hash[:12]}"
        )
    info = TeacherInfo(**{f: obj[f] for f in TeacherInfo.__dataclass_fields__})
    model = build_model(info.arch, info.num_classes, info.in_channels, info.image_size)
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False), info
