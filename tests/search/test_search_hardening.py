"""Issue 11, real searches: an infeasible resource request exits 2 at once and the default console of a
smoke search is short (a diverged trial: tests/search/test_divergence.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _cli(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("flags, missing", [
    (["--cpus-per-trial", "64"], "missing 62 CPUs"),
    (["--gpus-per-trial", "1"], "missing 1 GPUs"),
])
def test_an_infeasible_resource_request_exits_2_at_once(flags, missing, data_dir, tmp_path):
    """Ray would leave these trials PENDING forever; the timeout is the test's bound, far above the few
    seconds a local Ray takes to start and answer."""
    run = _cli([*flags, "--num-cpus", "2", "--trials", "2", "--storage", str(tmp_path), "--data-dir", data_dir,
                "--wandb-mode", "disabled"], timeout=180)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and missing in errors[0] and "Traceback" not in run.stderr
    assert not any(p.name.startswith("vae-") and any(p.glob("trial_*")) for p in tmp_path.iterdir())


def test_a_smoke_search_prints_a_short_console(data_dir, tmp_path):
    run = _cli(["--smoke-test", "--num-cpus", "2", "--storage", str(tmp_path), "--name", "smoke", "--data-dir",
                data_dir, "--wandb-mode", "disabled"], timeout=600)
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]
    lines = console.splitlines()
    assert len(lines) <= 40, console
    finished = [line for line in lines if line.startswith("trial ") and " after " in line]
    assert len(finished) == 4, console
    assert any(line.startswith("search done after ") for line in lines), console
    assert "leaderboard (best val neg-ELBO" in console and "latent_width" in console
    for noise in ("Checkpoint successfully created", "reported_at", "may become a bottleneck", "run/wandb",
                  "started with configuration", "Traceback", "ExperimentalWarning"):
        assert noise not in console, noise
