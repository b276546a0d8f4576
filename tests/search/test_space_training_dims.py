"""The space's depth, lr schedule and KL warm-up; the new CLI flags; importances; the trial's best snapshot."""

from __future__ import annotations

import json

import optuna
import pytest

from search.config import DEFAULT_TIME_BUDGET_S, ConfigError, SearchConfig
from search.export import IMPORTANCE_PNG, importance_study, search_distributions, write_importances
from search.layout import IMPORTANCE_JSON, read_importances
from search.run import build_parser, config_from_args, main
from search.space import PLAIN_TRAINING, SearchSpace


def test_suggest_samples_depth_schedule_and_warmup_inside_their_ranges():
    space = SearchSpace(depth=(1, 3), kl_warmup_epochs=(0, 20))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"depth": set(), "lr_schedule": set()}
    for _ in range(100):
        trial = study.ask()
        assert space.suggest(trial) is None
        assert 1 <= trial.params["depth"] <= 3 and 0 <= trial.params["kl_warmup_epochs"] <= 20
        seen["depth"].add(trial.params["depth"])
        seen["lr_schedule"].add(trial.params["lr_schedule"])
        study.tell(trial, 0.0)
    assert seen == {"depth": {1, 2, 3}, "lr_schedule": {"constant", "cosine"}}


def test_single_valued_dimensions_are_fixed_not_searched():
    space = SearchSpace.from_mapping({"depth": [1, 1], "lr_schedule": ["cosine"], "kl_warmup_epochs": [0, 0]})
    assert space.fixed() == {"depth": 1, "lr_schedule": "cosine", "kl_warmup_epochs": 0}
    trial = optuna.create_study().ask()
    assert space.suggest(trial) == {"depth": 1, "lr_schedule": "cosine", "kl_warmup_epochs": 0}
    assert not {"depth", "lr_schedule", "kl_warmup_epochs"} & set(trial.params)
    assert set(search_distributions(space)) == {"latent_width", "reparam_width", "conv_channels", "lr", "batch_size"}
    stem = SearchSpace.from_mapping({"conv_channels": [16]})
    assert stem.fixed() == {"conv_channels": 16} and "conv_channels" not in search_distributions(stem)


def test_warm_start_points_are_plain_training_and_drop_out_of_a_space_without_it():
    points = SearchSpace().warm_start_points()
    assert len(points) == 3 and all({k: p[k] for k in PLAIN_TRAINING} == PLAIN_TRAINING for p in points[1:])
    assert (points[0]["conv_channels"], points[0]["lr_schedule"], points[0]["depth"]) == (16, "cosine", 1)
    assert SearchSpace(depth=(2, 3)).warm_start_points() == []  # depth 1 is outside
    assert [p["conv_channels"] for p in SearchSpace(lr_schedule=("cosine",)).warm_start_points()] == [16]


def test_describe_prints_the_new_dimensions():
    text = SearchSpace().describe()
    for fragment in ("depth", "1 .. 3", "lr_schedule", "constant, cosine", "kl_warmup_epochs", "0 .. 20",
                     "conv_channels", "0, 16"):
        assert fragment in text


def test_cli_sets_the_new_ranges_and_the_time_budget():
    args = build_parser().parse_args(["--depth", "2", "3", "--lr-schedules", "cosine", "--kl-warmup-epochs", "0", "5",
                                      "--time-budget", "90"])
    config = config_from_args(args)
    assert (config.space.depth, config.space.lr_schedule, config.space.kl_warmup_epochs) == ((2, 3), ("cosine",),
                                                                                            (0, 5))
    assert config.time_budget_s == 90
    assert config_from_args(build_parser().parse_args(["--time-budget", "0"])).time_budget_s is None
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults.time_budget_s == DEFAULT_TIME_BUDGET_S and defaults.max_epochs == 100
    assert defaults.reuse_actors and defaults.keep_checkpoints == 2
    assert config_from_args(build_parser().parse_args(["--no-reuse-actors"])).reuse_actors is False
    assert config_from_args(build_parser().parse_args(["--iwae-k", "50"])).iwae_k == 50


@pytest.mark.parametrize("argv, fragment", [
    (["--time-budget", "-5"], "--time-budget"),
    (["--depth", "1", "4"], "depth bounds"),
    (["--lr-schedules", "step"], "lr_schedule choices"),
    (["--kl-warmup-epochs", "-1", "3"], "kl_warmup_epochs bounds"),
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
                     "kl_warmup_epochs": i, "batch_size": 128,
                     "best_val_neg_elbo": 150.0 - 10 * depth - i})
    rows.append({**rows[0], "trial_id": "failed", "status": "ERROR", "best_val_neg_elbo": None})
    rows.append({**rows[0], "trial_id": "outside", "latent_width": 4096, "best_val_neg_elbo": 90.0})
    return rows


def test_importances_are_written_from_the_leaderboard_with_optuna(tmp_path):
    space = SearchSpace()
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
    assert write_importances(_rows()[:1], SearchSpace(), tmp_path) == {}
    assert json.loads((tmp_path / IMPORTANCE_JSON).read_text())["importances"] == {}
    assert read_importances(tmp_path) == {}
    assert not (tmp_path / IMPORTANCE_PNG).exists()
