"""The search's terminal output, from Tune's callbacks (Tune's own reporter is off).

On a terminal: one live table, redrawn in place (rich's ``Live``): each trial's searched values, round, last
and best validation neg-ELBO and status, best first. When the output is a file or a pipe: no table, but one
line per finished trial and a one-line summary every ``summary_every_s``, so that a 20-trial search's log
stays short. A failure in this code is reported once as one line and never ends the search.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from search.budget import stored_deadline
from search.guarded_callback import GuardedCallback
from search.hyperparams import BY_NAME
from search.live import ERROR, trial_status
from search.trial_config import METRIC, RUN_KEY

TABLE_ROWS = 12
SUMMARY_EVERY_S = 120.0


def say(message: str) -> None:
    """Print one line of the search's output now. A module function, not the builtin ``print``: objects Tune
    pickles with the experiment (callbacks, the searcher) keep it, and ``print`` itself does not pickle once
    another library has replaced ``builtins.print``."""
    print(message, flush=True)


class Console(GuardedCallback):
    """The console of a search over ``searched`` hyperparameters. ``stream``: where it writes (a terminal gets
    the live table)."""

    def __init__(self, searched: tuple[str, ...], *, max_rounds: int, rungs: tuple[int, ...], experiment_dir: Path,
                 stream: TextIO | None = None, summary_every_s: float = SUMMARY_EVERY_S) -> None:
        self.searched, self.max_rounds, self.rungs, self.experiment_dir = searched, max_rounds, rungs, experiment_dir
        self._stream = stream  # None: sys.stdout when writing (a stream cannot be pickled with Tune's state)
        self.summary_every_s = summary_every_s
        self.deadline: float | None = None
        self._live: Any = None
        self._rows: dict[str, dict[str, Any]] = {}
        self._last_summary = time.monotonic()

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_live": None}

    # --- GuardedCallback's methods ---------------------------------------------------------------

    def setup_run(self) -> None:
        self.deadline = stored_deadline(self.experiment_dir)
        self._last_summary = time.monotonic()

    def result(self, trial: Any, result: dict[str, Any]) -> None:
        row = self._row(trial)
        row["result"] = result
        row["status"] = "RUNNING"
        if isinstance(result.get("round"), int):
            row["round"] = result["round"]
        value = result.get(METRIC)
        if isinstance(value, (int, float)) and value == value:
            row["last"] = float(value)
            row["best"] = value if row["best"] is None else min(row["best"], float(value))
        self._redraw()

    def ended(self, trial: Any, errored: bool) -> None:
        row = self._row(trial)
        result = row["result"] or trial.last_result or {}
        budget_over = self.deadline is not None and time.time() >= self.deadline
        row["status"] = trial_status("TERMINATED", result if "round" in result else None,
                                     max_rounds=self.max_rounds, rungs=self.rungs, errored=errored,
                                     budget_over=budget_over)
        values = ", ".join(f"{name} {BY_NAME[name].format(v)}" for name, v in row["values"].items())
        best = f"best val neg-ELBO {row['best']:.2f}" if row["best"] is not None else "no result"
        rounds = f"after {row['round']} round{'s' * (row['round'] != 1)}" if row["round"] else "before its first round"
        reason = f": {result['error']}" if row["status"] == ERROR and result.get("error") else ""
        self.line(f"trial {trial.trial_id} {row['status']} {rounds}: {best} ({values}){reason}")
        self._redraw()

    def step(self, trials: list[Any]) -> None:
        for trial in trials:
            row = self._row(trial)
            if row["status"] in ("PENDING", "RUNNING", "PAUSED"):
                row["status"] = trial.status if trial.status in ("PENDING", "RUNNING", "PAUSED") else row["status"]
        if not self.interactive and time.monotonic() - self._last_summary >= self.summary_every_s:
            self._last_summary = time.monotonic()
            self.line(self._summary())
        self._redraw()

    def experiment_ended(self, trials: list[Any]) -> None:
        self.close()

    def report_failure(self, exc: Exception) -> None:
        self.close()
        print(f"note: the console failed ({type(exc).__name__}: {exc}); the search goes on", file=self.stream,
              flush=True)

    def close(self) -> None:
        """Stop redrawing (the table is removed; what follows is printed plainly)."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()

    # --- what is shown --------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """One line above the live table, or plainly."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def _row(self, trial: Any) -> dict[str, Any]:
        row = self._rows.get(trial.trial_id)
        if row is None:
            config = trial.config or {}
            row = self._rows[trial.trial_id] = {"trial_id": trial.trial_id, "status": "PENDING", "round": None,
                                                "last": None, "best": None, "result": None,
                                                "values": {k: config.get(k) for k in self.searched if k != RUN_KEY}}
        return row

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for row in self._rows.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        best = min(((r["best"], r["trial_id"]) for r in self._rows.values() if r["best"] is not None), default=None)
        states = ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in sorted(counts.items()))
        return (f"[{time.strftime('%H:%M:%S')}] {len(self._rows)} trials ({states})"
                + (f"; best val neg-ELBO {best[0]:.2f} (trial {best[1]})" if best else ""))

    def _redraw(self) -> None:
        if not self.interactive:
            return
        from rich.console import Console as RichConsole
        from rich.live import Live

        if self._live is None:
            self._live = Live(self._table(), console=RichConsole(file=self.stream), refresh_per_second=2,
                              transient=True)
            self._live.start()
        else:
            self._live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self._summary(), title_justify="left", show_edge=False, pad_edge=False)
        for header in ("trial", *(BY_NAME[n].header for n in self.searched), "round", "val", "best", "status"):
            table.add_column(header, justify="left" if header in ("trial", "status") else "right")
        rows = sorted(self._rows.values(), key=lambda r: (r["best"] is None, r["best"] or 0.0))
        for row in rows[:TABLE_ROWS]:
            table.add_row(row["trial_id"], *(BY_NAME[n].format(row["values"].get(n)) for n in self.searched),
                          str(row["round"] or "-"), _nats(row["last"]), _nats(row["best"]), row["status"])
        if len(rows) > TABLE_ROWS:
            table.caption = f"... and {len(rows) - TABLE_ROWS} more"
        return table


def _nats(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
