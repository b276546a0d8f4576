"""serve.search_view: the Search view's data, read afresh from a search's live status while it grows and from its
export after it ended (no Gradio)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_search import FakeSearch

from search.layout import IMPORTANCE_JSON, LEADERBOARD_JSON
from serve.search_view import is_search_folder, read_view
from serve.service import best_trial_checkpoint


@pytest.fixture
def search(tmp_path: Path) -> FakeSearch:
    fake = FakeSearch(tmp_path / "exp")
    fake.trial("aaa", latent_width=64, reparam_width=8, lr=1e-3)
    fake.trial("bbb", latent_width=32, reparam_width=4, lr=3e-3, depth=2)
    return fake


def test_leaderboard_ranks_trials_and_shows_every_searched_hyperparameter(search: FakeSearch) -> None:
    for round_, val in enumerate((200.0, 150.0, 160.0), 1):
        search.report("aaa", round_, val, parameters=5000)
    search.report("bbb", 1, 140.0, parameters=900)
    search.set_status("aaa", "FINISHED")
    view = read_view(search.root)
    board = view.leaderboard()
    assert list(board["trial_id"]) == ["bbb", "aaa"] and list(board["rank"]) == [1, 2]
    assert {"latent_width", "reparam_width", "lr", "depth"} <= set(board.columns) and "run" not in board.columns
    aaa = board[board["trial_id"] == "aaa"].iloc[0]
    assert (aaa["best_val_neg_elbo"], aaa["last_val_neg_elbo"], aaa["rounds"]) == (150.0, 160.0, 3)
    assert aaa["status"] == "FINISHED" and board.iloc[0]["status"] == "RUNNING"
    assert aaa["depth"] == 1  # trial aaa did not search depth: the value it trained with (search.hyperparams)
    assert view.live.max_rounds == 5 and not view.exported and view.trial_rounds == 4
    assert "running (1 trial(s) training now)" in view.status(3.0)


def test_best_so_far_is_a_running_minimum_in_report_order(search: FakeSearch) -> None:
    search.report("aaa", 1, 200.0)
    search.report("bbb", 1, 180.0)
    search.report("aaa", 2, 190.0)
    search.report("bbb", 2, 185.0)
    search.report("aaa", 3, 120.0)
    best = read_view(search.root).best_so_far()
    assert list(best["trial_rounds"]) == [1, 2, 3, 4, 5]
    assert best["best_val_neg_elbo"].is_monotonic_decreasing  # never increases
    assert list(best["best_val_neg_elbo"]) == [200.0, 180.0, 180.0, 180.0, 120.0]
    assert list(best["wall_s"]) == sorted(best["wall_s"]) and best["wall_s"].iloc[0] >= 0
    curves = read_view(search.root).curves()
    assert set(curves["trial"]) == {"trial 1", "trial 2"} and len(curves) == 5


def test_a_retried_round_counts_once(search: FakeSearch) -> None:
    search.report("aaa", 1, 200.0)
    search.report("aaa", 2, 180.0)
    search.report("aaa", 2, 178.0)  # Tune restarted the trial from its round-1 checkpoint
    trial = read_view(search.root).live.trials[0]
    assert [r["val_neg_elbo"] for r in trial.reports] == [200.0, 178.0]


def test_pareto_front_and_importances(search: FakeSearch) -> None:
    search.trial("ccc", latent_width=128, reparam_width=8, lr=1e-3)
    search.report("aaa", 1, 150.0, parameters=5000)
    search.report("bbb", 1, 170.0, parameters=900)
    search.report("ccc", 1, 160.0, parameters=9000)  # larger and worse than aaa: dominated
    view = read_view(search.root)
    front = dict(zip(view.pareto()["trial_id"], view.pareto()["front"], strict=True))
    assert front == {"bbb": "Pareto front", "aaa": "Pareto front", "ccc": "dominated"}
    assert view.importance().empty
    (search.root / "best").mkdir()
    # importance.json as search.export writes it: its other fields ("trials": 3) are not importances.
    (search.root / "best" / IMPORTANCE_JSON).write_text(json.dumps(
        {"method": "m", "objective": "best_val_neg_elbo", "trials": 3,
         "importances": {"lr": 0.7, "latent_width": 0.2, "bad": "x"}}))
    frame = read_view(search.root).importance()
    assert list(frame["hyperparameter"]) == ["lr", "latent_width"] and list(frame["importance"]) == [0.7, 0.2]


def test_after_the_export_the_view_shows_the_exported_leaderboard(search: FakeSearch) -> None:
    search.report("aaa", 1, 150.0)
    search.end("search done after 12 s: all 2 trials ended")
    (search.root / "best").mkdir()
    (search.root / "best" / LEADERBOARD_JSON).write_text(json.dumps([
        {"rank": 1, "trial_id": "aaa", "status": "FINISHED", "origin": "searcher", "best_val_neg_elbo": 149.0,
         "rounds": 1, "parameters": 10, "latent_width": 64}]))
    view = read_view(search.root)
    assert view.exported and list(view.leaderboard()["best_val_neg_elbo"]) == [149.0]
    assert "ended and exported" in view.status(3.0) and "Search done after 12 s" in view.status(3.0)


def test_best_checkpoint_counts_only_kept_checkpoints_still_on_disk(search: FakeSearch,
                                                                     trained_checkpoint: Path) -> None:
    assert best_trial_checkpoint(search.root) is None
    search.report("aaa", 1, 200.0, checkpoint_from=trained_checkpoint)
    search.report("bbb", 1, 150.0, checkpoint_from=trained_checkpoint)
    search.report("bbb", 2, 140.0)  # reported without a checkpoint
    best = best_trial_checkpoint(search.root)
    assert (best.trial_id, best.round, best.val_neg_elbo) == ("bbb", 1, 150.0)
    assert best.path == (search.root / "trial_bbb" / "checkpoint_000000").resolve()
    search.drop_checkpoint("bbb", 1)  # Tune's num_to_keep removed it
    assert best_trial_checkpoint(search.root).trial_id == "aaa"


def test_what_is_a_search_folder(search: FakeSearch, tmp_path: Path) -> None:
    assert is_search_folder(search.root)
    assert not is_search_folder(tmp_path / "nothing") and not is_search_folder(tmp_path / "exp" / "trial_aaa")
    assert read_view(tmp_path) is None
