"""A real, small search in a subprocess (`python -m search.run`, local Ray with one CPU), for tests that
watch the app follow it while it runs. Small, slowish trials (batch 32), no early stopping and one trial
at a time, so that the search runs for about half a minute and writes a new best checkpoint often."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from serve_harness import REPO

SEARCH_TIMEOUT_S = 300


@dataclass
class RunningSearch:
    experiment: Path
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = SEARCH_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout)


def search_command(storage: Path, name: str, trials: int, rounds: int) -> list[str]:
    return [sys.executable, "-m", "search.run", "--trials", str(trials), "--max-rounds", str(rounds),
            # --grace-period 1: trials write their best round as a checkpoint at every round (the default writes
            # one every 10 rounds), so that the app has new bests to follow within a few rounds.
            "--no-early-stopping", "--grace-period", "1", "--depth", "1", "1",
            "--max-concurrent", "1", "--num-cpus", "1", "--cpus-per-trial", "1",
            "--latent-width", "160", "256", "--reparam-width", "4", "16", "--batch-sizes", "32",
            "--storage", str(storage), "--name", name, "--wandb-mode", "disabled", "--verbose", "0"]


@contextmanager
def running_search(tmp: Path, trials: int = 3, rounds: int = 6, name: str = "live") -> Iterator[RunningSearch]:
    """Start the search; on exit stop it if it still runs (SIGINT, as Ctrl+C: Tune saves and Ray shuts down)."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "search.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "wb") as out:
        process = subprocess.Popen(search_command(tmp / "results", name, trials, rounds), cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    search = RunningSearch(tmp / "results" / name, process, log)
    try:
        yield search
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
