"""Writing a search's folder by hand, step by step, as the search writes it for its readers: the live status
(search.live's contract, live.json) and trial checkpoints (vae.checkpoint folders with their examples bank and
class Gaussians). That the real search writes the same contract is tested in tests/search (the live status
against the export)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from search.live import LIVE_JSON, VERSION, write_json_atomic
from vae.checkpoint import load_checkpoint, save_checkpoint


class FakeSearch:
    def __init__(self, root: Path, max_rounds: int = 5, num_trials: int = 4) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.start = time.time()
        self.header: dict[str, Any] = {"version": VERSION, "experiment": root.name, "started_at": self.start,
                                       "ended": False, "stop_reason": None, "num_trials": num_trials,
                                       "max_rounds": max_rounds, "round_images": 8000, "rungs": [2],
                                       "dataset": "mnist", "hyperparameters": []}
        self.trials: dict[str, dict[str, Any]] = {}
        self._write()

    def trial(self, trial_id: str, **hyper: Any) -> Path:
        folder = self.root / f"trial_{trial_id}"
        folder.mkdir()
        names = self.header["hyperparameters"]
        names.extend(name for name in hyper if name not in names)
        self.trials[trial_id] = {"trial_id": trial_id, "status": "RUNNING", "hyperparameters": hyper,
                                 "parameters": None, "error": None, "reports": [], "checkpoints": []}
        self._write()
        return folder

    def report(self, trial_id: str, round_: int, val: float, *, checkpoint_from: Path | None = None,
               parameters: int = 1000) -> Path | None:
        """One round's report; with ``checkpoint_from`` (a vae.checkpoint folder) a kept checkpoint of that round,
        as the search lists it once Tune has persisted it."""
        trial = self.trials[trial_id]
        path = None
        if checkpoint_from is not None:
            path = self.root / f"trial_{trial_id}" / f"checkpoint_{round_ - 1:06d}"
            source = load_checkpoint(checkpoint_from)
            save_checkpoint(path, source.model, dataset="mnist", metrics={"val_neg_elbo": val, "round": round_},
                            extra={"trial_id": trial_id, "round": round_}, examples=source.examples,
                            class_gaussians=source.class_gaussians)
            trial["checkpoints"].append({"path": str(path.relative_to(self.root)), "round": round_,
                                         "val_neg_elbo": val})
        trial["parameters"] = parameters
        trial["reports"] = [r for r in trial["reports"] if r["round"] < round_] + [
            {"round": round_, "images": 8000 * round_, "epochs": float(round_), "val_neg_elbo": val,
             "reported_at": self.start + round_ + len(self.trials) * 0.1}]
        self._write()
        return path

    def set_status(self, trial_id: str, status: str) -> None:
        self.trials[trial_id]["status"] = status
        self._write()

    def end(self, stop_reason: str = "search done") -> None:
        self.header.update(ended=True, stop_reason=stop_reason)
        self._write()

    def drop_checkpoint(self, trial_id: str, round_: int) -> None:
        shutil.rmtree(self.root / f"trial_{trial_id}" / f"checkpoint_{round_ - 1:06d}")

    def _write(self) -> None:
        write_json_atomic(self.root / LIVE_JSON, {**self.header, "updated_at": time.time(),
                                                  "trials": list(self.trials.values())})
