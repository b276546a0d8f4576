"""``GuardedCallback``: Tune's callback hooks, each turned into a plain method of the subclass and guarded, so
that an exception in code that only watches a search (the console, the live status file) is reported once as
one line and never ends the search."""

from __future__ import annotations

import contextlib
from typing import Any

from ray.tune import Callback


class GuardedCallback(Callback):
    """Subclasses override the plain methods (``started``, ``setup_run``, ``result``, ``checkpointed``,
    ``ended``, ``step``, ``experiment_ended``) and ``report_failure``; Tune's hooks call them inside a guard."""

    _failed = False

    # --- what a subclass overrides -------------------------------------------------------------

    def setup_run(self) -> None:
        """The experiment starts or resumes."""

    def started(self, trial: Any) -> None:
        """A trial starts."""

    def result(self, trial: Any, result: dict[str, Any]) -> None:
        """A trial reported."""

    def checkpointed(self, trial: Any, checkpoint: Any) -> None:
        """Tune kept a checkpoint of a trial."""

    def ended(self, trial: Any, errored: bool) -> None:
        """A trial ended (``errored``: it failed)."""

    def step(self, trials: list[Any]) -> None:
        """One turn of Tune's loop is over."""

    def experiment_ended(self, trials: list[Any]) -> None:
        """The experiment is over."""

    def report_failure(self, exc: Exception) -> None:
        """Say, once, that this callback failed and the search goes on."""

    # --- Tune's hooks ---------------------------------------------------------------------------

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._guarded(self.setup_run)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded(self.started, trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self._guarded(self.result, trial, result)

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        self._guarded(self.checkpointed, trial, checkpoint)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded(self.ended, trial, False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._guarded(self.ended, trial, True)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._guarded(self.step, trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._guarded(self.experiment_ended, trials)

    def _guarded(self, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except Exception as exc:  # watching a search must never end it
            if not self._failed:
                self._failed = True
                with contextlib.suppress(Exception):  # reporting the failure failed too: nothing left to say
                    self.report_failure(exc)
