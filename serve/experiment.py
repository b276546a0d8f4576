"""Reading what a search exported (see search/layout.py): the best/ folder, its leaderboard and the
trials' checkpoints. Only JSON and paths here; checkpoints are loaded by vae.checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.layout import BEST_DIR, LEADERBOARD_JSON


class ExperimentError(RuntimeError):
    """The folder is not an exported experiment, or its leaderboard is unreadable."""


@dataclass(frozen=True)
class Experiment:
    """An exported experiment: ``best`` is its best/ folder (itself the best trial's checkpoint)."""

    best: Path
    leaderboard: tuple[dict[str, Any], ...]

    @property
    def name(self) -> str:
        return self.best.parent.name

    def best_trial_id(self) -> str | None:
        for row in self.leaderboard:
            if row.get("is_best"):
                return str(row["trial_id"])
        return None

    def switchable_trials(self) -> list[str]:
        """Trial ids with a checkpoint to serve, in leaderboard order."""
        return [str(row["trial_id"]) for row in self.leaderboard if row.get("checkpoint")]

    def row(self, trial_id: str) -> dict[str, Any] | None:
        return next((row for row in self.leaderboard if str(row["trial_id"]) == trial_id), None)

    def trial_checkpoint(self, trial_id: str) -> Path:
        """The checkpoint folder of ``trial_id``; refuses unknown trials, trials without a
        checkpoint and paths that would leave best/ (the leaderboard is data, not trusted code)."""
        row = self.row(trial_id)
        if row is None:
            raise ExperimentError(f"no trial {trial_id!r} in this experiment's leaderboard")
        if not row.get("checkpoint"):
            raise ExperimentError(f"trial {trial_id} left no checkpoint (status {row.get('status', 'unknown')})")
        best = self.best.resolve()
        path = (best / str(row["checkpoint"])).resolve()
        if not path.is_relative_to(best):
            raise ExperimentError(
                f"trial {trial_id}'s checkpoint path {row['checkpoint']!r} points outside {BEST_DIR}/"
            )
        return path


def find_best_dir(path: str | Path) -> Path:
    """``path`` may be the experiment folder or its best/ folder."""
    path = Path(path)
    for candidate in (path / BEST_DIR, path):
        if (candidate / LEADERBOARD_JSON).is_file():
            return candidate
    raise ExperimentError(
        f"{path} is not an exported experiment: no {BEST_DIR}/{LEADERBOARD_JSON} in it "
        "(a search writes it when it ends; or pass --checkpoint DIR to serve one checkpoint)"
    )


def load_experiment(path: str | Path) -> Experiment:
    best = find_best_dir(path)
    file = best / LEADERBOARD_JSON
    try:
        rows = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExperimentError(f"{file} is not readable JSON ({exc})") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "trial_id" in r for r in rows):
        raise ExperimentError(f"{file} is not a leaderboard (expected a list of rows with a trial_id each)")
    return Experiment(best, tuple(rows))
