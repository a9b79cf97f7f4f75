"""Service settings, from the environment (``PCD_*``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service; README lists them."""

    model_config = SettingsConfigDict(env_prefix="PCD_", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///runs/pcd.db", description="study store (SQLAlchemy URL)")
    mlflow_tracking_uri: str | None = Field(None, description="MLflow server or store")
    ray_address: str | None = Field(
        None,
        description="http://HEAD:8265: run each study as a Ray Job on that cluster; "
        "HOST:PORT: a local driver joins that cluster; unset: a local Ray per study",
    )
    tune_storage: str | None = Field(
        None, description="Ray Tune storage URI shared by all nodes (default: the study folder)"
    )
    optuna_storage: str | None = Field(None, description="Optuna storage; default per study")
    cluster_autoscales: bool = Field(
        False,
        description="the Ray cluster adds nodes on demand: a trial's resources are not refused "
        "for want of a node that exists now",
    )
    data_root: Path = Field(Path("data"), description="root of dataset folders")
    teacher_root: Path = Field(Path("teachers"), description="root of teacher checkpoints")
    studies_dir: Path = Field(Path("runs/studies"), description="study folders (shared storage)")
    api_tokens: SecretStr = Field(
        SecretStr(""), description="comma-separated TOKEN:rw or TOKEN:ro entries"
    )
    warm_driver: bool = Field(
        True, description="keep one local study driver imported and waiting (starts faster)"
    )
    max_concurrent_studies: int = Field(2, ge=1)
    max_trials: int = Field(512, ge=1)
    max_epochs: int = Field(400, ge=1)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    mlflow_outage_s: float = Field(
        900.0, ge=0, description="drivers retry MLflow calls this long while it is unreachable"
    )
    mlflow_read_timeout_s: float = Field(
        5.0, gt=0, le=60, description="the API's MLflow reads: per request, without retries"
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
