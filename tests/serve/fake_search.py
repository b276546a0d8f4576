"""Writing an experiment folder the way Ray Tune and the search write it, by hand and step by step, so that
tests can watch a "running" search grow: trial_<id>/params.json, result.json lines and checkpoint_NNNNNN/
folders (vae.checkpoint), the search's vaesearch_search.json and Tune's experiment_state-*.json."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from vae.checkpoint import load_checkpoint, save_checkpoint


class FakeSearch:
    def __init__(self, root: Path, max_epochs: int = 5, dataset: str = "mnist", data_dir: Path | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.start = time.time()
        self.statuses: dict[str, str] = {}
        (root / "vaesearch_search.json").write_text(json.dumps(
            {"num_samples": 4, "config": {"max_epochs": max_epochs, "dataset": dataset,
                                           "data_dir": str(data_dir) if data_dir else None, "seed": 0}}))

    def trial(self, trial_id: str, **hyper: Any) -> Path:
        folder = self.root / f"trial_{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({**hyper, "run": {"max_epochs": 5, "dataset": "mnist"}}))
        self.set_status(trial_id, "RUNNING")
        return folder

    def report(self, trial_id: str, epoch: int, val: float, *, checkpoint_from: Path | None = None,
               parameters: int = 1000, partial_line: bool = False) -> Path | None:
        """Append one epoch's result; with ``checkpoint_from`` (a vae.checkpoint folder) first copy it in as
        checkpoint_<epoch-1>, as Tune persists a checkpoint before it records the result."""
        folder = self.root / f"trial_{trial_id}"
        name, path = None, None
        if checkpoint_from is not None:
            name = f"checkpoint_{epoch - 1:06d}"
            path = folder / name
            source = load_checkpoint(checkpoint_from)
            save_checkpoint(path, source.model, dataset="mnist", metrics={"val_neg_elbo": val, "epoch": epoch},
                            extra={"trial_id": trial_id, "epoch": epoch})
        report = {"epoch": epoch, "training_iteration": epoch, "val_neg_elbo": val, "parameters": parameters,
                  "reported_at": self.start + epoch + len(self.statuses) * 0.1, "time_this_iter_s": 1.0,
                  "time_total_s": float(epoch), "trial_id": trial_id, "checkpoint_dir_name": name}
        with open(folder / "result.json", "a") as handle:
            handle.write(json.dumps(report) + "\n")
            if partial_line:
                handle.write('{"epoch": 99, "val_neg_el')
        return path

    def set_status(self, trial_id: str, status: str) -> None:
        self.statuses[trial_id] = status
        storage = {"_type": "CLOUDPICKLE_FALLBACK", "value": "00"}
        trials = [[json.dumps({"trial_id": t, "status": s, "storage": storage}), "{}"]
                  for t, s in self.statuses.items()]
        (self.root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trials}))

    def drop_checkpoint(self, trial_id: str, epoch: int) -> None:
        shutil.rmtree(self.root / f"trial_{trial_id}" / f"checkpoint_{epoch - 1:06d}")
