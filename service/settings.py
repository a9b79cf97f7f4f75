"""Every ``PCD_*`` setting, read in one place: ``Settings`` (the API and its supervisor: the
environment or a ``.env`` file) and ``RunnerSettings`` (a study driver: the environment that
``Settings.driver_env()`` gave it). One set of defaults, below; README's settings tables list
them (a test keeps the two in step)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# pcd_core's own default data root (``default_data_root``) is the same folder
DEFAULT_DATA_ROOT = Path("data")
DEFAULT_TEACHER_ROOT = Path("teachers")
DEFAULT_MLFLOW_LOCAL_DIR = Path("runs")  # of the `pcd` commands (study_files.LocalMlflowStore)
DEFAULT_MLFLOW_OUTAGE_S = 900.0
DEFAULT_TRIAL_CHECKPOINT_MAX_MB = 50.0
# what the API needs and a driver must not get (its Ray workers would carry them too)
API_SECRETS = ("PCD_API_TOKENS", "PCD_DATABASE_URL")


def _unset(shown: str) -> dict[str, str]:
    """What README says a setting is when it is not set (its default is None or empty)."""
    return {"unset": shown}


class Settings(BaseSettings):
    """Every setting of the service; README lists them."""

    model_config = SettingsConfigDict(env_prefix="PCD_", env_file=".env", extra="ignore")

    # Each description is README's "meaning" and `unset` its default where the field's is
    # None or empty (tests/test_settings.py checks README's table against these fields).
    database_url: str = Field(
        "sqlite:///runs/pcd.db",
        description="study store (SQLAlchemy URL; migrated with Alembic at start)",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI",
        json_schema_extra=_unset("the local store in `PCD_MLFLOW_LOCAL_DIR`"),
    )
    # ---- MLflow links and the local store (service/mlflow_links.py, study_files)
    mlflow_public_url: str | None = Field(
        None,
        description="the MLflow UI's address as a browser reaches it (e.g. "
        "`http://localhost:5000`); links in responses and CLI output use it",
        json_schema_extra=_unset(
            "the tracking URI if `http(s)://`; for a local store the CLI prints its `mlflow ui` "
            "command and links on `http://127.0.0.1:5000`"
        ),
    )
    mlflow_local_dir: Path | None = Field(
        None,
        description="without a tracking URI: the folder of the one local MLflow store "
        "(`mlflow.db`, `mlartifacts/`) that studies and single runs (`pcd distill`, "
        "`pcd teacher train`) share",
        json_schema_extra=_unset("the studies folder's parent (`runs`)"),
    )
    ray_address: str | None = Field(
        None,
        description="`http://HEAD:8265`: drivers as Ray Jobs on that cluster; `HOST:PORT`: "
        "local drivers (and `pcd study run`) join that cluster",
        json_schema_extra=_unset("a local Ray per study"),
    )
    tune_storage: str | None = Field(
        None,
        description="Ray Tune storage URI shared by all nodes (e.g. `s3://pcd/tune`, with "
        "`AWS_*` credentials)",
        json_schema_extra=_unset("the study folder"),
    )
    optuna_storage: str | None = Field(
        None,
        description="Optuna storage URL (e.g. `postgresql+psycopg://...`), another database "
        "than the study store",
        json_schema_extra=_unset("`sqlite:///<study>/optuna.db`"),
    )
    cluster_autoscales: bool = Field(
        False,
        description="the cluster adds nodes on demand: a study whose `resources` no node has "
        "now waits for one instead of failing at once",
    )
    data_root: Path = Field(
        DEFAULT_DATA_ROOT,
        description="root of dataset folders named in specs, and of datasets when a spec "
        "names no folder",
    )
    teacher_root: Path = Field(
        DEFAULT_TEACHER_ROOT, description="root of teacher checkpoints named in specs"
    )
    studies_dir: Path = Field(
        Path("runs/studies"), description="study folders (shared storage on a cluster)"
    )
    api_tokens: SecretStr = Field(
        SecretStr(""),
        description="`TOKEN:rw,TOKEN:ro,...` (never logged)",
        json_schema_extra=_unset("none: every call is 401"),
    )
    warm_driver: bool = Field(
        True,
        description="keep one local driver imported and waiting for the next study (not with "
        "Ray Jobs)",
    )
    max_concurrent_studies: int = Field(
        2, ge=1, description="studies running at once; the rest queue"
    )
    max_trials: int = Field(512, ge=1, description="trials of a study, at most")
    max_epochs: int = Field(400, ge=1, description="epochs of a trial or a teacher, at most")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="request body limit")
    trial_checkpoint_max_mb: float = Field(
        DEFAULT_TRIAL_CHECKPOINT_MAX_MB,
        ge=0,
        description="a trial's best checkpoint (`best.pt`) is logged to its MLflow run when "
        "it is at most this many MB (0: never)",
    )
    local_cpus: int | None = Field(
        None, ge=1, description="CPUs of each driver's local Ray", json_schema_extra=_unset("all")
    )
    mlflow_outage_s: float = Field(
        DEFAULT_MLFLOW_OUTAGE_S,
        ge=0,
        description="how long a driver retries MLflow calls (with backoff) while the server "
        "is unreachable before the study fails",
    )
    mlflow_read_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="the API's MLflow reads time out after this, without retries; meanwhile "
        "studies and trials answer their last known state with `stale: true`",
    )

    @field_validator("database_url")
    @classmethod
    def _url(cls, url: str) -> str:
        if "://" not in url:
            raise ValueError("database_url must be an SQLAlchemy URL, e.g. sqlite:///runs/pcd.db")
        return url

    @model_validator(mode="after")
    def _separate_stores(self) -> Settings:
        # both have a table "studies": sharing one database breaks whichever starts second
        if self.optuna_storage and self.optuna_storage == self.database_url:
            raise ValueError(
                "PCD_OPTUNA_STORAGE must be another database than PCD_DATABASE_URL "
                "(both keep a table named 'studies')"
            )
        return self

    @property
    def local_mlflow_dir(self) -> Path:
        """The local MLflow store's folder (study_files.LocalMlflowStore)."""
        return self.mlflow_local_dir or self.studies_dir.parent

    @property
    def uses_ray_jobs(self) -> bool:
        """Whether ``ray_address`` names a Ray Jobs API (``http(s)://head:8265``): drivers
        run as Ray Jobs on the cluster rather than as local processes."""
        return bool(self.ray_address) and self.ray_address.startswith(("http://", "https://"))

    def driver_env(self) -> dict[str, str]:
        """The ``PCD_*`` environment a study driver gets (it reads no .env file of its own):
        what ``RunnerSettings.from_env`` reads, folders absolute, no API secrets."""
        env = {
            "PCD_MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            # a Ray Job's driver runs inside the cluster and joins it
            "PCD_RAY_ADDRESS": "auto" if self.uses_ray_jobs else self.ray_address,
            "PCD_OPTUNA_STORAGE": self.optuna_storage,
            "PCD_TUNE_STORAGE": self.tune_storage,
            "PCD_DATA_ROOT": str(self.data_root.resolve()),
            "PCD_TEACHER_ROOT": str(self.teacher_root.resolve()),
            "PCD_LOCAL_CPUS": str(self.local_cpus) if self.local_cpus else None,
            "PCD_CLUSTER_AUTOSCALES": "true" if self.cluster_autoscales else None,
            "PCD_MLFLOW_OUTAGE_S": str(self.mlflow_outage_s),
            "PCD_TRIAL_CHECKPOINT_MAX_MB": str(self.trial_checkpoint_max_mb),
            "PCD_MLFLOW_LOCAL_DIR": str(self.local_mlflow_dir.resolve()),
            "PCD_MLFLOW_PUBLIC_URL": self.mlflow_public_url,
        }
        return {key: value for key, value in env.items() if value}

    def tokens(self) -> dict[str, str]:
        """token -> scope ("rw" or "ro")."""
        out: dict[str, str] = {}
        for entry in self.api_tokens.get_secret_value().split(","):
            entry = entry.strip()
            if not entry:
                continue
            token, _, scope = entry.partition(":")
            if scope not in ("rw", "ro") or not token:
                raise ValueError("PCD_API_TOKENS entries look like TOKEN:rw or TOKEN:ro")
            out[token] = scope
        return out


@dataclass
class RunnerSettings:
    """Where a study's parts live, as its driver sees them. Local defaults: everything under
    the study folder; datasets and teachers under the same roots as the service's."""

    tracking_uri: str | None = None  # default: the local store in mlflow_local_dir
    # study_files.LocalMlflowStore's folder; None: the study folder's parent (the `pcd`
    # commands default to DEFAULT_MLFLOW_LOCAL_DIR, as the service does: runs/)
    mlflow_local_dir: Path | None = None
    mlflow_public_url: str | None = None  # the MLflow UI's address for links (mlflow_links)
    optuna_storage: str | None = None  # default sqlite:///<study_dir>/optuna.db
    ray_address: str | None = None  # None: a local Ray started by this process
    tune_storage: str | None = None  # Tune experiment storage URI; default <study_dir>/tune
    data_root: Path = DEFAULT_DATA_ROOT
    teacher_root: Path = DEFAULT_TEACHER_ROOT
    num_cpus: int | None = None  # local Ray only
    # teacher-logit banks (keyed by teacher hash and data pipeline, so studies that share a
    # teacher can share one folder); None: <study_dir>/logit_bank
    logit_bank_root: Path | None = None
    # the cluster adds nodes on demand (an autoscaler): no request is refused for want of a
    # node that exists now, unless the autoscaler publishes its node types
    cluster_autoscales: bool = False
    trial_checkpoint_max_mb: float = DEFAULT_TRIAL_CHECKPOINT_MAX_MB  # larger best.pt: not logged

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunnerSettings:
        """The settings in ``environ`` (default: this process's environment), as
        ``Settings.driver_env`` writes them; unset or empty: the defaults."""
        env = os.environ if environ is None else environ

        def path(key: str, default: Path) -> Path:
            return Path(env[key]) if env.get(key) else default

        return cls(
            tracking_uri=env.get("PCD_MLFLOW_TRACKING_URI") or None,
            mlflow_local_dir=Path(env["PCD_MLFLOW_LOCAL_DIR"])
            if env.get("PCD_MLFLOW_LOCAL_DIR")
            else None,
            mlflow_public_url=env.get("PCD_MLFLOW_PUBLIC_URL") or None,
            optuna_storage=env.get("PCD_OPTUNA_STORAGE") or None,
            ray_address=env.get("PCD_RAY_ADDRESS") or None,
            tune_storage=env.get("PCD_TUNE_STORAGE") or None,
            data_root=path("PCD_DATA_ROOT", DEFAULT_DATA_ROOT),
            teacher_root=path("PCD_TEACHER_ROOT", DEFAULT_TEACHER_ROOT),
            num_cpus=int(env["PCD_LOCAL_CPUS"]) if env.get("PCD_LOCAL_CPUS") else None,
            cluster_autoscales=env.get("PCD_CLUSTER_AUTOSCALES", "").lower()
            in ("1", "true", "yes"),
            trial_checkpoint_max_mb=float(
                env.get("PCD_TRIAL_CHECKPOINT_MAX_MB") or DEFAULT_TRIAL_CHECKPOINT_MAX_MB
            ),
        )
