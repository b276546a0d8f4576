"""One ranking for the export, the live view and the benchmarks (search.leaderboard), the live status contract
(search.live: statuses, reading a status file), and the trial's origin (a known point or the searcher)."""

from __future__ import annotations

import json

from search.leaderboard import best_so_far, format_table, pareto_front, rank, trial_row
from search.live import (
    EARLY_STOPPED,
    ERROR,
    FINISHED,
    NO_RESULT,
    RUNNING,
    STOPPED,
    TIME_BUDGET,
    TrialLive,
    read_live,
    trial_status,
    write_json_atomic,
)
from search.space import CONV_RECIPE, SEARCHER, SearchSpace

HYPER = {"latent_width": 64, "reparam_width": 8, "depth": 1, "conv_channels": 0, "lr": 1e-3, "lr_schedule": "cosine",
         "kl_warmup_rounds": 0, "batch_size": 128}


def _trial(trial_id: str, values: list[float], status: str = FINISHED, start: float = 0.0) -> TrialLive:
    reports = tuple({"round": k, "val_neg_elbo": v, "reported_at": start + k} for k, v in enumerate(values, 1))
    return TrialLive(trial_id, status, dict(HYPER), reports)


def _row(trial_id, parameters, loss, status=FINISHED):
    return {"trial_id": trial_id, "parameters": parameters, "best_val_neg_elbo": loss, "status": status}


def test_pareto_front_keeps_only_undominated_trials_smallest_first():
    rows = [_row("big-best", 900, 100.0), _row("small", 100, 130.0), _row("mid", 400, 110.0),
            _row("mid-worse", 500, 120.0), _row("tiny-bad", 50, 200.0), _row("failed", 10, None, ERROR)]
    assert [r["trial_id"] for r in pareto_front(rows)] == ["tiny-bad", "small", "mid", "big-best"]


def test_rows_rank_by_best_value_with_failed_and_empty_trials_last():
    rows = rank([trial_row(_trial("a", [150.0, 120.0])), trial_row(_trial("b", [110.0, 115.0])),
                 trial_row(_trial("c", [], NO_RESULT)), trial_row(_trial("d", [90.0], ERROR))])
    assert [(r["trial_id"], r["rank"]) for r in rows] == [("b", 1), ("a", 2), ("d", 3), ("c", 4)]
    assert rows[0]["best_round"] == 1 and rows[0]["rounds"] == 2 and rows[0]["last_val_neg_elbo"] == 115.0
    assert rows[0]["parameters"] > 0 and rows[0]["latent_width"] == 64
    table = format_table(rows)
    assert table.splitlines()[0].split()[:4] == ["#", "trial", "latent", "reparam"]
    assert "110.00" in table.splitlines()[1]


def test_best_so_far_follows_the_reports_in_time_order():
    curve = best_so_far([_trial("a", [150.0, 120.0, 119.0], start=0.0), _trial("b", [130.0, 125.0], start=0.5)])
    assert [c["best_val_neg_elbo"] for c in curve] == [150.0, 130.0, 120.0, 120.0, 119.0]
    assert [c["trial_id"] for c in curve] == ["a", "b", "a", "b", "a"]
    assert [c["trial_rounds"] for c in curve] == [1, 2, 3, 4, 5]


def test_one_status_vocabulary_from_what_ended_a_trial():
    def status(result, tune_status="TERMINATED", errored=False, budget_over=False):
        return trial_status(tune_status, result, max_rounds=90, rungs=(10, 30), errored=errored,
                            budget_over=budget_over)

    assert status({"round": 90, "last_round": True}) == FINISHED
    assert status({"round": 42, "last_round": True}) == TIME_BUDGET  # annealed to the deadline
    assert status({"round": 10, "last_round": False}) == EARLY_STOPPED  # ASHA, at a rung
    assert status({"round": 12, "last_round": False}, budget_over=True) == TIME_BUDGET
    assert status({"round": 12, "last_round": False}) == STOPPED
    assert status(None) == NO_RESULT
    assert status({"round": 3, "diverged": 1}) == ERROR
    assert status({"round": 3}, tune_status=RUNNING) == RUNNING


def test_the_live_status_file_is_read_without_trusting_it(tmp_path):
    write_json_atomic(tmp_path / "live.json", {
        "version": 1, "trials": [
            {"trial_id": "a", "status": "RUNNING", "hyperparameters": {"lr": 1e-3, "evil": {"x": 1}},
             "reports": [{"round": 1, "val_neg_elbo": 150.0}, {"round": "2", "val_neg_elbo": 1.0},
                         {"round": 3, "val_neg_elbo": None}],
             "checkpoints": [{"path": "../../etc", "round": 1, "val_neg_elbo": 140.0},
                             {"path": "trial_a/checkpoint_000001", "round": 1, "val_neg_elbo": 150.0}]},
            {"trial_id": 7}, "junk"],
        "max_rounds": "lots", "rungs": [10, "x"]})
    (tmp_path / "trial_a" / "checkpoint_000001").mkdir(parents=True)
    live = read_live(tmp_path)
    assert live is not None and [t.trial_id for t in live.trials] == ["a"]
    trial = live.trials[0]
    assert trial.hyperparameters == {"lr": 1e-3} and trial.best == 150.0 and len(trial.reports) == 1
    assert live.max_rounds is None and live.rungs == (10,)
    best = live.best_checkpoint()
    assert best is not None and best[1]["path"] == "trial_a/checkpoint_000001"  # ../../etc is not a folder here
    assert read_live(tmp_path / "nowhere") is None
    (tmp_path / "live.json").write_text(json.dumps({"version": 99, "trials": []}))
    assert read_live(tmp_path) is None


def test_a_trial_knows_whether_it_is_a_known_point():
    space = SearchSpace()
    assert space.origin(space.seed_point(CONV_RECIPE)) == "known point: convolutional 256/32"
    assert space.origin({**space.seed_point(CONV_RECIPE), "lr": 1.1e-3}) == SEARCHER
