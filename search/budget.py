"""The search's time budget as a deadline that every part of a run reads from one file.

The driver writes ``BUDGET_FILE`` at the experiment root before each run (a fresh search or a ``--resume``):
the trial total, this run's deadline (``time.time() + time_budget_s``) and the rest of its config. Trials get
the deadline as a parameter and anneal to it (vae.train.fit); the searcher (search.searcher.TrialBudget) starts
no trial in its last ``LAST_START_SHARE``; ``DeadlineStopper`` stops whatever still runs a little later
(``slack_s``). Tune pickles its callbacks and stoppers with the experiment and brings back those of the first run when
an experiment is resumed, so they read the deadline from this file rather than keep their own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ray.tune.stopper import Stopper

from search.config import SearchConfig
from search.layout import BUDGET_FILE

# No trial starts in the last share of the time budget: it could not train to its first rung.
LAST_START_SHARE = 0.05
# What still runs this long after the deadline is stopped: the slack for a trial's last report and checkpoint
# after it annealed to the deadline (a tenth of the budget, within these bounds).
SLACK_BOUNDS_S = (5.0, 30.0)


def read_budget(experiment_dir: str | Path) -> dict:
    """This run's ``BUDGET_FILE`` at ``experiment_dir`` ({} when there is none or it is unreadable). Tune brings
    back a resumed experiment's callbacks and stopper as they were pickled, so they read this run's deadline
    and trial total here."""
    try:
        stored = json.loads((Path(experiment_dir) / BUDGET_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def stored_deadline(experiment_dir: str | Path) -> float | None:
    """The deadline (``time.time()``) this run of the experiment was given; None without a time budget."""
    deadline = read_budget(experiment_dir).get("deadline")
    return float(deadline) if isinstance(deadline, (int, float)) else None


def slack_s(config: SearchConfig) -> float:
    """How long after the deadline ``DeadlineStopper`` stops whatever still runs."""
    low, high = SLACK_BOUNDS_S
    return min(high, max(low, 0.1 * (config.time_budget_s or 0.0)))


def last_start_s(config: SearchConfig) -> float:
    """How long before the deadline the search stops starting trials."""
    return LAST_START_SHARE * config.time_budget_s if config.time_budget_s else 0.0


class DeadlineStopper(Stopper):
    """Stops every trial ``slack_s`` after the deadline in ``<experiment_dir>/BUDGET_FILE`` (never without one).
    Tune's own ``time_budget_s`` would keep the first run's budget through every ``--resume``."""

    def __init__(self, experiment_dir: str | Path, slack_s: float) -> None:
        self.experiment_dir, self.slack_s = str(experiment_dir), slack_s
        self._seen: tuple[float, float | None] | None = None  # (the file's mtime, its deadline)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        deadline = self._deadline()
        return deadline is not None and time.time() >= deadline + self.slack_s

    def _deadline(self) -> float | None:
        path = Path(self.experiment_dir) / BUDGET_FILE
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, stored_deadline(self.experiment_dir))
        return self._seen[1]

