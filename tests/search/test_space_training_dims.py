"""The space's depth, lr schedule and KL warm-up; the new CLI flags; importances; the trial's best snapshot."""

from __future__ import annotations

import json

import optuna
import pytest

from search.config import DEFAULT_TIME_BUDGET_S, ConfigError, SearchConfig
from search.importance import IMPORTANCE_PNG, importance_study, search_distributions, write_importances
from search.layout import IMPORTANCE_JSON, read_importances
from search.run import build_parser, config_from_args, main
from search.space import SearchSpace


def test_suggest_samples_depth_schedule_and_warmup_inside_their_ranges():
    space = SearchSpace(depth=(1, 3), kl_warmup_rounds=(0, 20), lr_schedule=("constant", "cosine"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"depth": set(), "lr_schedule": set()}
    for _ in range(100):
        trial = study.ask()
        assert space.suggest(trial) is None
        assert 1 <= trial.params["depth"] <= 3 and 0 <= trial.params["kl_warmup_rounds"] <= 20
        seen["depth"].add(trial.params["depth"])
        seen["lr_schedule"].add(trial.params["lr_schedule"])
        study.tell(trial, 0.0)
    assert seen == {"depth": {1, 2, 3}, "lr_schedule": {"constant", "cosine"}}


def test_single_valued_dimensions_are_fixed_not_searched():
    space = SearchSpace.from_mapping({"depth": [1, 1], "lr_schedule": ["cosine"], "kl_warmup_rounds": [0, 0]})
    assert space.fixed() == {"depth": 1, "lr_schedule": "cosine", "kl_warmup_rounds": 0}
    trial = optuna.create_study().ask()
    assert space.suggest(trial) == {"depth": 1, "lr_schedule": "cosine", "kl_warmup_rounds": 0}
    assert not {"depth", "lr_schedule", "kl_warmup_rounds"} & set(trial.params)
    assert set(search_distributions(space)) == {"latent_width", "reparam_width", "conv_channels", "lr", "batch_size"}
    stem = SearchSpace.from_mapping({"conv_channels": [16]})
    assert stem.fixed()["conv_channels"] == 16 and "conv_channels" not in search_distributions(stem)
    assert SearchSpace().fixed() == {"lr_schedule": "cosine", "kl_warmup_rounds": 0}  # the default space's


def test_warm_start_points_are_cosine_recipes_and_drop_out_of_a_space_without_them():
    space = SearchSpace(lr_schedule=("constant", "cosine"), kl_warmup_rounds=(0, 20))
    points = space.warm_start_points()
    assert len(points) == 3 and all(p["lr_schedule"] == "cosine" and p["kl_warmup_rounds"] == 0 for p in points)
    assert [(p["conv_channels"], p["depth"]) for p in points] == [(16, 1), (0, 1), (0, 1)]
    assert SearchSpace(depth=(2, 3)).warm_start_points() == []  # depth 1 is outside
    assert SearchSpace(lr_schedule=("constant",)).warm_start_points() == []  # recipes for the budget: cosine


def test_describe_prints_every_dimension():
    text = SearchSpace().describe()
    for fragment in ("latent_width", "32 .. 1024", "depth", "1 .. 2", "lr_schedule", "cosine", "kl_warmup_rounds",
                     "0 .. 0", "conv_channels", "0, 16", "batch_size", "64, 128, 256"):
        assert fragment in text


def test_cli_sets_the_new_ranges_and_the_time_budget():
    args = build_parser().parse_args(["--depth", "2", "3", "--lr-schedules", "cosine", "--kl-warmup-rounds", "0", "5",
                                      "--time-budget", "90"])
    config = config_from_args(args)
    space = config.space
    assert (space["depth"], space["lr_schedule"], space["kl_warmup_rounds"]) == ((2, 3), ("cosine",), (0, 5))
    assert config.time_budget_s == 90
    assert config_from_args(build_parser().parse_args(["--time-budget", "0"])).time_budget_s is None
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults.time_budget_s == DEFAULT_TIME_BUDGET_S and defaults.max_rounds == 300
    assert defaults.reuse_actors and defaults.keep_checkpoints == 2
    assert config_from_args(build_parser().parse_args(["--no-reuse-actors"])).reuse_actors is False
    assert config_from_args(build_parser().parse_args(["--iwae-k", "50"])).iwae_k == 50


@pytest.mark.parametrize("argv, fragment", [
    (["--time-budget", "-5"], "--time-budget"),
    (["--depth", "1", "4"], "depth bounds"),
    (["--lr-schedules", "step"], "lr_schedule choices"),
    (["--kl-warmup-rounds", "-1", "3"], "kl_warmup_rounds bounds"),
])
def test_bad_new_flags_exit_2_with_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err


def test_time_budget_must_be_positive():
    with pytest.raises(ConfigError, match="time_budget_s must be a positive number"):
        SearchConfig(time_budget_s=0)
    assert SearchConfig(time_budget_s=None).time_budget_s is None


def _rows():
    rows = []
    for i, (width, depth, schedule) in enumerate([(64, 1, "constant"), (128, 2, "cosine"), (256, 1, "cosine"),
                                                   (512, 3, "constant"), (32, 2, "cosine"), (1024, 1, "constant")]):
        rows.append({"trial_id": f"t{i}", "status": "TERMINATED", "latent_width": width, "reparam_width": 8,
                     "depth": depth, "conv_channels": 16 * (i % 2), "lr": 1e-3, "lr_schedule": schedule,
                     "kl_warmup_rounds": i, "batch_size": 128,
                     "best_val_neg_elbo": 150.0 - 10 * depth - i})
    rows.append({**rows[0], "trial_id": "failed", "status": "ERROR", "best_val_neg_elbo": None})
    rows.append({**rows[0], "trial_id": "outside", "latent_width": 4096, "best_val_neg_elbo": 90.0})
    return rows


def test_importances_are_written_from_the_leaderboard_with_optuna(tmp_path):
    space = SearchSpace(depth=(1, 3), lr_schedule=("constant", "cosine"), kl_warmup_rounds=(0, 20))
    study = importance_study(_rows(), space)
    assert len(study.trials) == 6  # the failed trial and the one outside the space are left out
    assert [t.value for t in study.trials] == [r["best_val_neg_elbo"] for r in _rows()[:6]]
    importances = write_importances(_rows(), space, tmp_path)
    written = json.loads((tmp_path / IMPORTANCE_JSON).read_text())
    assert written["importances"] == pytest.approx(importances) and written["trials"] == 6
    assert read_importances(tmp_path) == pytest.approx(importances)  # what the app's Search view reads back
    assert set(importances) == set(search_distributions(space))
    assert sum(importances.values()) == pytest.approx(1.0)
    assert (tmp_path / IMPORTANCE_PNG).stat().st_size > 1000


def test_importances_with_too_few_trials_write_an_empty_file_and_no_png(tmp_path):
    assert write_importances(_rows()[:1], SearchSpace(depth=(1, 3)), tmp_path) == {}
    assert json.loads((tmp_path / IMPORTANCE_JSON).read_text())["importances"] == {}
    assert read_importances(tmp_path) == {}
    assert not (tmp_path / IMPORTANCE_PNG).exists()
