"""Suite-wide: no test writes the `pcd` commands' shared local MLflow store (./runs) into the
working folder. Tests that need a store of their own set PCD_MLFLOW_LOCAL_DIR themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _local_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PCD_MLFLOW_LOCAL_DIR", str(tmp_path_factory.mktemp("mlflow-local")))
        yield
