"""The live status of a search: what a running (or ended) search says about itself in ``LIVE_JSON``, the
contract between the search (search.live_writer writes it from Tune's callbacks) and its readers (the app,
benchmarks). Nothing here imports Ray, and no reader needs to parse Tune's own files.

``<experiment>/live.json`` is rewritten whole, by atomic rename, as trials report:

    {"version": 1, "experiment": <name>, "started_at": <unix s>, "updated_at": <unix s>,
     "ended": <bool>, "stop_reason": <str or null>, "num_trials": <the trial budget>,
     "max_rounds": <int>, "round_images": <int>, "rungs": [<int>, ...], "dataset": <str>,
     "image_shape": [<C>, <H>, <W>], "class_names": [<str>, ...],   # empty: the data has no labels
     "hyperparameters": [<name>, ...],            # the searched ones, in search.hyperparams' order
     "trials": [{"trial_id": <str>, "status": <a STATUSES word>, "hyperparameters": {<name>: <value>},
                 "parameters": <int or null>, "error": <str or null>,
                 "reports": [{"round", "images", "epochs", "val_neg_elbo", "reported_at"}, ...],
                 "checkpoints": [{"path": <relative to the experiment>, "round", "val_neg_elbo"}, ...]}]}

A trial's checkpoints are the ones Tune keeps (search.trial_state: its best round so far, as a vae.checkpoint
folder with its examples bank and class Gaussians); a listed one may have been deleted since by Tune's
``num_to_keep``, so a reader checks that it is still there.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIVE_JSON = "live.json"
VERSION = 1

# One status vocabulary, for the live view and the export.
PENDING, RUNNING, PAUSED = "PENDING", "RUNNING", "PAUSED"
FINISHED = "FINISHED"  # trained all its rounds
EARLY_STOPPED = "EARLY_STOPPED"  # stopped by ASHA at a rung
TIME_BUDGET = "TIME_BUDGET"  # ended by the search's time budget (annealed to its deadline, or stopped at it)
STOPPED = "STOPPED"  # stopped otherwise before its last round (the search was interrupted)
NO_RESULT = "NO_RESULT"  # ended before its first report
ERROR = "ERROR"  # failed or diverged
STATUSES = (RUNNING, PENDING, PAUSED, FINISHED, EARLY_STOPPED, TIME_BUDGET, STOPPED, NO_RESULT, ERROR)


def trial_status(tune_status: str, last_result: dict[str, Any] | None, *, max_rounds: int, rungs: Iterable[int],
                 errored: bool, budget_over: bool) -> str:
    """A trial's status word from Tune's status ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"), its last
    report (``last_round`` says whether the trial ended itself there), ASHA's rungs (the only rounds where ASHA
    stops a trial), and whether the search's time budget is over."""
    result = last_result or {}
    if errored or tune_status == "ERROR" or result.get("diverged"):
        return ERROR
    if tune_status in (PENDING, RUNNING, PAUSED):
        return tune_status
    if "round" not in result:
        return NO_RESULT
    if result.get("last_round"):
        return FINISHED if int(result["round"]) >= max_rounds else TIME_BUDGET
    if int(result["round"]) in set(rungs):
        return EARLY_STOPPED
    return TIME_BUDGET if budget_over else STOPPED


@dataclass(frozen=True)
class TrialLive:
    trial_id: str
    status: str
    hyperparameters: dict[str, Any]
    reports: tuple[dict[str, Any], ...] = ()
    checkpoints: tuple[dict[str, Any], ...] = ()
    parameters: int | None = None
    error: str | None = None

    @property
    def values(self) -> list[float]:
        return [float(r["val_neg_elbo"]) for r in self.reports if finite(r.get("val_neg_elbo"))]

    @property
    def best(self) -> float | None:
        return min(self.values, default=None)

    @property
    def rounds(self) -> int:
        return int(self.reports[-1]["round"]) if self.reports else 0


@dataclass(frozen=True)
class SearchLive:
    experiment: Path
    trials: tuple[TrialLive, ...] = ()
    hyperparameters: tuple[str, ...] = ()
    num_trials: int | None = None
    max_rounds: int | None = None
    round_images: int | None = None
    rungs: tuple[int, ...] = ()
    dataset: str | None = None
    started_at: float | None = None
    ended: bool = False
    stop_reason: str | None = None

    def best_checkpoint(self) -> tuple[TrialLive, dict[str, Any]] | None:
        """The kept checkpoint with the lowest validation neg-ELBO that is still on disk (the earliest of
        equals), with its trial; None when there is none yet."""
        candidates = [(float(c["val_neg_elbo"]), k, t, c) for k, t in enumerate(self.trials) for c in t.checkpoints
                      if finite(c.get("val_neg_elbo")) and (self.experiment / str(c.get("path", ""))).is_dir()]
        if not candidates:
            return None
        _, _, trial, checkpoint = min(candidates, key=lambda item: (item[0], item[1]))
        return trial, checkpoint

    def checkpoint_path(self, checkpoint: dict[str, Any]) -> Path:
        """Where a listed checkpoint is; refuses a path that would leave the experiment folder."""
        root = self.experiment.resolve()
        path = (root / str(checkpoint["path"])).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"checkpoint path {checkpoint['path']!r} points outside the experiment")
        return path


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` whole: a temporary file in the same folder, renamed into place, so
    that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, allow_nan=False, default=_plain)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def read_live(experiment: str | Path) -> SearchLive | None:
    """The live status of the search at ``experiment``, or None when it has written none (yet) or the file
    is not a status file. Values of the wrong type are left out, not trusted."""
    experiment = Path(experiment)
    try:
        data = json.loads((experiment / LIVE_JSON).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("trials"), list):
        return None
    trials = tuple(_trial(t) for t in data["trials"] if isinstance(t, dict) and isinstance(t.get("trial_id"), str))
    return SearchLive(
        experiment=experiment, trials=trials,
        hyperparameters=tuple(str(h) for h in _list(data.get("hyperparameters"))),
        num_trials=_int(data.get("num_trials")), max_rounds=_int(data.get("max_rounds")),
        round_images=_int(data.get("round_images")),
        rungs=tuple(r for r in _list(data.get("rungs")) if isinstance(r, int)),
        dataset=data["dataset"] if isinstance(data.get("dataset"), str) else None,
        started_at=float(data["started_at"]) if finite(data.get("started_at")) else None,
        ended=data.get("ended") is True,
        stop_reason=data["stop_reason"] if isinstance(data.get("stop_reason"), str) else None)


def _trial(data: dict[str, Any]) -> TrialLive:
    hyper = data.get("hyperparameters")
    hyper = {str(k): v for k, v in hyper.items() if isinstance(v, (int, float, str, bool))} \
        if isinstance(hyper, dict) else {}
    reports = tuple(r for r in _list(data.get("reports")) if isinstance(r, dict) and finite(r.get("val_neg_elbo"))
                    and isinstance(r.get("round"), int))
    checkpoints = tuple(c for c in _list(data.get("checkpoints")) if isinstance(c, dict)
                        and isinstance(c.get("path"), str) and finite(c.get("val_neg_elbo")))
    status = data.get("status") if data.get("status") in STATUSES else PENDING
    return TrialLive(data["trial_id"], str(status), hyper, reports, checkpoints, _int(data.get("parameters")),
                     data["error"] if isinstance(data.get("error"), str) else None)


def _list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and tuples' friends in a trial's values."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

