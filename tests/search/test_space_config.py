from __future__ import annotations

import json

import optuna
import pytest

from search.config import ConfigError, SearchConfig
from search.hyperparams import plain_values
from search.space import (
    ARTICLE_BEST,
    ARTICLE_GRID,
    CONV_RECIPE,
    PYTORCH_EXAMPLE,
    SearchSpace,
    SpaceError,
)

PLAIN_TRAINING = {k: v for k, v in plain_values().items() if k != "batch_size"}


def _searched(point: dict) -> dict:
    """A known point as the default space passes it to the searcher: its searched values, plain ones filled in."""
    full = {**PLAIN_TRAINING, "batch_size": 128, **point}
    return {k: full[k] for k in SearchSpace().searched()}


def test_default_space_contains_the_known_points_and_the_article_grid():
    space = SearchSpace()
    assert space.seed_point() == _searched(ARTICLE_BEST)
    assert space.warm_start_points() == [_searched(CONV_RECIPE), _searched(ARTICLE_BEST), _searched(PYTORCH_EXAMPLE)]
    assert [p["batch_size"] for p in space.warm_start_points()] == [64, 128, 128]
    # A space without the stem keeps the two MLP points; one of stems only keeps the convolutional one.
    assert [p["latent_width"] for p in SearchSpace(conv_channels=(0,)).warm_start_points()] == [512, 400]
    assert [p["latent_width"] for p in SearchSpace(conv_channels=(16, 32)).warm_start_points()] == [256]
    for point in ARTICLE_GRID:
        space.check(point)
    assert [(p["latent_width"], p["reparam_width"]) for p in ARTICLE_GRID] == [
        (32, 4), (64, 8), (128, 16), (256, 32), (512, 64)]


@pytest.mark.parametrize("overrides, fragment", [
    ({"lr": [1e-2, 1e-4]}, "lr bounds"),
    ({"lr": [0, 1e-2]}, "lr bounds"),
    ({"latent_width": [0, 64]}, "latent_width bounds"),
    ({"latent_width": [64, 16]}, "latent_width bounds"),
    ({"latent_width": [16, 32], "reparam_width": [64, 128]}, "exceeds latent_width high"),
    ({"batch_size": []}, "batch_size"),
    ({"latent_width": [16.5, 32]}, "not numbers"),
    ({"width": [1, 2]}, "unknown search space parameter"),
    ({"depth": [1, 4]}, "depth bounds"),
    ({"depth": [0, 2]}, "depth bounds"),
    ({"kl_warmup_rounds": [-1, 5]}, "kl_warmup_rounds bounds"),
    ({"latent_width": [16, 100_000]}, "latent_width bounds"),
    ({"lr_schedule": ["step"]}, "lr_schedule choices"),
    ({"conv_channels": [0, 65]}, "conv_channels choices"),
    ({"conv_channels": []}, "conv_channels choices"),
    ({"conv_channels": [-1]}, "conv_channels choices"),
])
def test_bad_space_overrides_are_rejected(overrides, fragment):
    with pytest.raises(SpaceError, match=fragment):
        SearchSpace.from_mapping(overrides)


def test_space_file_overrides_only_the_named_ranges(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("latent_width: [16, 512]\nbatch_size: [128]\n")
    space = SearchSpace.from_file(path)
    assert space["latent_width"] == (16, 512)
    assert space["batch_size"] == (128,)
    assert space["lr"] == SearchSpace()["lr"]
    assert "batch_size" not in space.seed_point()  # a single choice is a constant, not a searched parameter


def test_define_by_run_space_never_samples_reparam_above_latent():
    space = SearchSpace(latent_width=(4, 64), reparam_width=(2, 128))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        trial = study.ask()
        fixed = space.suggest(trial)
        assert fixed == {"lr_schedule": "cosine", "kl_warmup_rounds": 0}
        assert 2 <= trial.params["reparam_width"] <= trial.params["latent_width"] <= 64
        assert 2e-4 <= trial.params["lr"] <= 4e-3
        study.tell(trial, 0.0)


def test_a_narrowed_space_keeps_only_the_baselines_inside_it():
    assert SearchSpace(latent_width=(16, 450)).warm_start_points() == [_searched(CONV_RECIPE),
                                                                      _searched(PYTORCH_EXAMPLE)]
    assert SearchSpace(latent_width=(16, 128)).warm_start_points() == []
    assert SearchConfig(space=SearchSpace(latent_width=(16, 128))).warm_start_points == []  # not an error
    assert len(SearchConfig().warm_start_points) == 3
    assert SearchConfig(warm_start=False).warm_start_points == []
    assert SearchConfig(searcher="grid").warm_start_points == []  # the grid's points are its own
    with pytest.raises(SpaceError, match="outside the space"):
        SearchSpace(latent_width=(16, 128)).seed_point()


@pytest.mark.parametrize("changes, fragment", [
    ({"trials": 0}, "^trials must be a positive integer"),
    ({"max_rounds": 0}, "^max_rounds must be a positive integer"),
    ({"max_rounds": 2, "grace_period": 3}, r"^grace_period \(3\) must not exceed max_rounds \(2\)"),
    ({"round_images": 0}, "^round_images must be a positive integer"),
    ({"iwae_seconds": -1}, "^iwae_seconds must be a positive number"),
    ({"gpus_per_trial": -0.5}, "^gpus_per_trial must be >= 0"),
    ({"gpus_per_trial": 1.5}, "^gpus_per_trial must be >= 0"),
    ({"dataset": "cifar10"}, "^unknown dataset 'cifar10'"),
    ({"storage": "relative/path"}, "^storage must be an absolute path or a URI"),
    ({"name": "a/b"}, "^name 'a/b' must be letters"),
    ({"wandb_mode": "sometimes"}, "^wandb_mode must be one of"),
    ({"searcher": "bayes"}, "^searcher must be one of"),
])
def test_invalid_options_are_rejected_with_one_line_naming_the_field(changes, fragment):
    """A Python caller reads the field's name (not a CLI flag) in the message."""
    with pytest.raises(ConfigError, match=fragment) as info:
        SearchConfig(**changes)
    assert "\n" not in str(info.value) and "--" not in str(info.value)


def test_num_samples_and_paths():
    assert SearchConfig().num_samples == 20
    assert SearchConfig(trials=3).num_samples == 3
    assert SearchConfig(searcher="grid", trials=3).num_samples == len(ARTICLE_GRID)
    local = SearchConfig(storage="/tmp/store")
    assert local.experiment_path("x") == "/tmp/store/x"
    assert local.local_experiment_dir("x").as_posix() == "/tmp/store/x"
    remote = SearchConfig(storage="s3://bucket/runs/")
    assert remote.storage_is_uri and remote.experiment_path("x") == "s3://bucket/runs/x"
    assert remote.local_experiment_dir("x").parts[-2:] == ("results", "x")


def test_config_round_trips_through_its_stored_form():
    config = SearchConfig(trials=7, max_rounds=3, grace_period=1, space=SearchSpace(lr=(1e-4, 1e-3), batch_size=(128,)),
                          storage="/tmp/x", name="exp")
    assert SearchConfig.from_dict(json.loads(config.to_json())) == config
    # an experiment stored before a field was removed still loads (its unknown keys are ignored)
    stored = {**json.loads(config.to_json()), "inject_nan": {"epoch": 2, "latent_width": 64}}
    assert SearchConfig.from_dict(stored) == config


def test_grid_points_get_a_fixed_batch_size_and_tpe_starts_modelling_early(tmp_path):
    from search.searcher import build_searcher

    grid = build_searcher(SearchConfig(searcher="grid", storage=str(tmp_path)), "grid-exp")
    points = grid.searcher._points_to_evaluate
    assert [p["batch_size"] for p in points] == [128] * len(ARTICLE_GRID)
    assert [(p["latent_width"], p["reparam_width"]) for p in points] == [
        (p["latent_width"], p["reparam_width"]) for p in ARTICLE_GRID]
    tpe = build_searcher(SearchConfig(trials=20, storage=str(tmp_path)), "tpe-exp")
    sampler = tpe.searcher._sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 5
    assert sampler._multivariate and sampler._group and sampler._constant_liar


def test_rungs_are_where_asha_judges():
    assert SearchConfig().rungs == (10, 30, 90, 270)
    assert SearchConfig(max_rounds=90).rungs == (10, 30)
    assert SearchConfig(max_rounds=100, grace_period=5, reduction_factor=2).rungs == (5, 10, 20, 40, 80)
    assert SearchConfig(early_stopping=False).rungs == ()


def test_the_iwae_budget_is_a_share_of_the_time_budget():
    assert SearchConfig().iwae_budget_s == pytest.approx(0.05 * 450)
    assert SearchConfig(time_budget_s=None).iwae_budget_s == 30.0
    assert SearchConfig(iwae_seconds=3).iwae_budget_s == 3.0
