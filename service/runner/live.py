"""A live table of a study's trials in the terminal (a Tune callback driving rich.live)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from rich.console import Console
from rich.live import Live
from rich.table import Table

from service.ranking import Mode, at_best_epoch_key, best_value


class LiveTrialTable(Callback):
    """Running, finished, stopped early and failed trials, with the best so far."""

    def __init__(self, metric: str, mode: Mode, max_epochs: int, console: Console | None = None):
        self.metric, self.mode, self.max_epochs = metric, mode, max_epochs
        self.rows: dict[str, dict[str, Any]] = {}
        self.console = console or Console()
        self._live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_live"] = None
        state["console"] = None
        return state

    def _render(self) -> Table:
        best = best_value([row["best"] for row in self.rows.values()], self.mode)
        table = Table(
            title=f"trials ({self.metric}, best so far: {best if best is None else round(best, 2)})"
        )
        for col in (
            "trial",
            "status",
            "epochs",
            f"last {self.metric}",
            f"best {self.metric}",
            "config",
        ):
            table.add_column(col)
        for trial_id, row in self.rows.items():
            table.add_row(
                trial_id,
                row["status"],
                f"{row['epochs']}/{self.max_epochs}",
                "-" if row["last"] is None else f"{row['last']:.2f}",
                "-" if row["best"] is None else f"{row['best']:.2f}",
                row["config"],
            )
        return table

    def _update(self, trial: Trial, **changes: Any) -> None:
        row = self.rows.setdefault(
            trial.trial_id,
            {
                "status": "running",
                "epochs": 0,
                "last": None,
                "best": None,
                "config": ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in (trial.config or {}).items()
                ),
            },
        )
        row.update(changes)
        if self._live is None:
            self._live = Live(
                self._render(), console=self.console or Console(), refresh_per_second=4
            )
            self._live.start()
        self._live.update(self._render())

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._update(trial, status="running")

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        self._update(
            trial,
            epochs=int(result.get("epoch", 0)),
            last=result.get(self.metric),
            best=result.get(at_best_epoch_key(self.metric)),  # the trial's value so far
        )

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        epochs = self.rows.get(trial.trial_id, {}).get("epochs", 0)
        self._update(trial, status="finished" if epochs >= self.max_epochs else "stopped early")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._update(trial, status="failed")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
