"""serve.progress: reading a search's experiment folder while it grows and after it ended (no Gradio)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fake_search import FakeSearch

from search.layout import IMPORTANCE_JSON
from serve.progress import is_search_folder, read_progress


@pytest.fixture
def search(tmp_path: Path) -> FakeSearch:
    fake = FakeSearch(tmp_path / "exp")
    fake.trial("aaa", latent_width=64, reparam_width=8, lr=1e-3)
    fake.trial("bbb", latent_width=32, reparam_width=4, lr=3e-3, depth=2)  # a new hyperparameter appears
    return fake


def test_leaderboard_ranks_trials_and_shows_every_hyperparameter(search: FakeSearch) -> None:
    for epoch, val in enumerate((200.0, 150.0, 160.0), 1):
        search.report("aaa", epoch, val, parameters=5000)
    search.report("bbb", 1, 140.0, parameters=900)
    search.set_status("aaa", "TERMINATED")
    progress = read_progress(search.root)
    board = progress.leaderboard()
    assert list(board["trial_id"]) == ["bbb", "aaa"] and list(board["rank"]) == [1, 2]
    assert {"latent_width", "reparam_width", "lr", "depth"} <= set(board.columns) and "run" not in board.columns
    aaa = board[board["trial_id"] == "aaa"].iloc[0]
    assert (aaa["best_val_neg_elbo"], aaa["last_val_neg_elbo"], aaa["epochs"]) == (150.0, 160.0, 3)
    assert aaa["status"] == "TERMINATED" and board.iloc[0]["status"] == "RUNNING"
    assert math.isnan(aaa["depth"])  # trial aaa has no depth: missing, not made up
    assert progress.max_epochs == 5 and not progress.exported and progress.trial_epochs == 4


def test_best_so_far_is_a_running_minimum_in_report_order(search: FakeSearch) -> None:
    search.report("aaa", 1, 200.0)
    search.report("bbb", 1, 180.0)
    search.report("aaa", 2, 190.0)
    search.report("bbb", 2, 185.0)
    search.report("aaa", 3, 120.0)
    best = read_progress(search.root).best_so_far()
    assert list(best["trial_epochs"]) == [1, 2, 3, 4, 5]
    assert best["best_val_neg_elbo"].is_monotonic_decreasing  # never increases
    assert list(best["best_val_neg_elbo"]) == [200.0, 180.0, 180.0, 180.0, 120.0]
    assert list(best["wall_s"]) == sorted(best["wall_s"]) and best["wall_s"].iloc[0] >= 0


def test_a_half_written_line_is_skipped_until_it_is_complete(search: FakeSearch) -> None:
    search.report("aaa", 1, 200.0, partial_line=True)
    assert read_progress(search.root).trial_epochs == 1
    with open(search.root / "trial_aaa" / "result.json", "a") as handle:
        handle.write('bo": 1}\n')  # the line is now complete JSON but has no val_neg_elbo: still skipped
    search.report("aaa", 2, 150.0)
    assert list(read_progress(search.root).reports()["val_neg_elbo"]) == [200.0, 150.0]


def test_a_retried_epoch_counts_once(search: FakeSearch) -> None:
    search.report("aaa", 1, 200.0)
    search.report("aaa", 2, 180.0)
    search.report("aaa", 2, 178.0)  # Tune restarted the trial from its epoch-1 checkpoint
    trial = read_progress(search.root).trials[0]
    assert [r["val_neg_elbo"] for r in trial.reports] == [200.0, 178.0]


def test_pareto_front_and_importances(search: FakeSearch) -> None:
    search.trial("ccc", latent_width=128, reparam_width=8, lr=1e-3)
    search.report("aaa", 1, 150.0, parameters=5000)
    search.report("bbb", 1, 170.0, parameters=900)
    search.report("ccc", 1, 160.0, parameters=9000)  # larger and worse than aaa: dominated
    progress = read_progress(search.root)
    front = dict(zip(progress.pareto()["trial_id"], progress.pareto()["front"], strict=True))
    assert front == {"bbb": "Pareto front", "aaa": "Pareto front", "ccc": "dominated"}
    assert progress.importance_frame().empty
    (search.root / "best").mkdir()
    # importance.json as search.export writes it: its other fields ("trials": 3) are not importances.
    (search.root / "best" / IMPORTANCE_JSON).write_text(json.dumps(
        {"method": "m", "objective": "best_val_neg_elbo", "trials": 3,
         "importances": {"lr": 0.7, "latent_width": 0.2, "bad": "x"}}))
    frame = read_progress(search.root).importance_frame()
    assert list(frame["hyperparameter"]) == ["lr", "latent_width"] and list(frame["importance"]) == [0.7, 0.2]


def test_best_checkpoint_counts_only_kept_checkpoints_named_in_the_results(search: FakeSearch,
                                                                           trained_checkpoint: Path) -> None:
    progress = read_progress(search.root)
    assert progress.best_checkpoint() is None
    search.report("aaa", 1, 200.0, checkpoint_from=trained_checkpoint)
    search.report("bbb", 1, 150.0, checkpoint_from=trained_checkpoint)
    search.report("bbb", 2, 140.0)  # reported without a checkpoint
    # A checkpoint folder that no result names yet (Tune is still copying it) is not a candidate.
    (search.root / "trial_aaa" / "checkpoint_000005").mkdir()
    (search.root / "trial_aaa" / "checkpoint_000005" / "checkpoint.json").write_text("{}")
    best = read_progress(search.root).best_checkpoint()
    assert (best.trial_id, best.epoch, best.val_neg_elbo) == ("bbb", 1, 150.0)
    assert best.path == search.root / "trial_bbb" / "checkpoint_000000"
    search.drop_checkpoint("bbb", 1)  # Tune's num_to_keep removed it
    assert read_progress(search.root).best_checkpoint().trial_id == "aaa"


def test_what_is_a_search_folder(search: FakeSearch, tmp_path: Path) -> None:
    assert is_search_folder(search.root)
    assert not is_search_folder(tmp_path / "nothing") and not is_search_folder(tmp_path / "exp" / "trial_aaa")
    empty = read_progress(tmp_path)
    assert empty.trials == () and empty.leaderboard().empty and empty.best_so_far().empty
