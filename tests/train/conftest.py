"""A small digits teacher, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcd_core.train import TrainConfig, train


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    result = train(TrainConfig(arch="cnn_small", epochs=4, lr=0.05), out)
    assert result.teacher_artifact is not None
    return result.teacher_artifact
