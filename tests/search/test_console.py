"""The search's console and live status writer, driven with stand-ins for Tune's trials: one line per ended
trial when piped (a 20-trial search stays short), and a failure in either never escapes a Tune hook."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from search.console import Console
from search.live import read_live
from search.live_writer import LiveStatusWriter

SEARCHED = ("latent_width", "lr")


def _trial(k: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"t{k:02d}", config={"latent_width": 64 + k, "lr": 1e-3, "run": {}},
                           status="RUNNING", last_result=None)


def _drive(callback, trials: int = 20, rounds: int = 3) -> None:
    """What Tune calls during a search of ``trials`` trials of ``rounds`` rounds each."""
    callback.setup()
    everyone = [_trial(k) for k in range(trials)]
    for trial in everyone:
        callback.on_trial_start(0, everyone, trial)
        for r in range(1, rounds + 1):
            result = {"round": r, "val_neg_elbo": 200.0 - r - trial.config["latent_width"] / 100,
                      "last_round": r == rounds, "reported_at": float(r)}
            trial.last_result = result
            callback.on_trial_result(0, everyone, trial, result)
            callback.on_step_end(0, everyone)
        trial.status = "TERMINATED"
        callback.on_trial_complete(0, everyone, trial)
    callback.on_experiment_end(everyone)


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("the terminal went away")


def test_a_piped_console_prints_one_line_per_trial(tmp_path: Path):
    out = io.StringIO()
    _drive(Console(SEARCHED, max_rounds=3, rungs=(1,), experiment_dir=tmp_path, stream=out, summary_every_s=3600))
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 and all(line.startswith("trial t") and " FINISHED after 3 rounds" in line
                                    for line in lines)
    assert "latent_width 64" in lines[0] and "\x1b[" not in out.getvalue()  # no live table when piped


def test_a_failing_console_never_ends_the_search(tmp_path: Path):
    console = Console(SEARCHED, max_rounds=3, rungs=(1,), experiment_dir=tmp_path, stream=Broken())
    _drive(console)  # no exception escapes a hook


def test_the_live_status_writer_records_every_trial_and_survives_a_failure(tmp_path: Path):
    header = {"num_trials": 20, "max_rounds": 3, "round_images": 8000, "rungs": [1], "dataset": "mnist",
              "hyperparameters": list(SEARCHED)}
    _drive(LiveStatusWriter(tmp_path, "exp", header, min_interval_s=0.0, log=lambda _m: None))
    live = read_live(tmp_path)
    assert live is not None and len(live.trials) == 20 and {t.status for t in live.trials} == {"FINISHED"}
    assert all(t.rounds == 3 for t in live.trials) and live.hyperparameters == SEARCHED

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    notes: list[str] = []
    _drive(LiveStatusWriter(blocked, "exp", header, log=notes.append))  # cannot write: noted once, no raise
    assert len(notes) == 1 and notes[0].startswith("note: could not update live.json")
