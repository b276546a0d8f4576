"""Training in rounds of a fixed number of images, the cosine plan that a deadline re-plans, the time-bounded
IWAE, the packed data a search shares with its trials, and reading older training configs."""

from __future__ import annotations

import math
import time

import pytest
import torch

from vae.class_gaussians import fit_class_gaussians
from vae.config import ModelConfig, TrainConfig
from vae.data import DataSplits, PackedSplits, Split
from vae.iwae import iwae_per_image, iwae_within
from vae.model import build_model
from vae.schedule import CosineSegments
from vae.train import cosine_plan, fit, round_indices, rounds_before


def _tiny_data(n: int = 96) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(3 * n, 784, generator=generator) > 0.7).float()
    labels = torch.arange(3 * n) % 4
    return DataSplits("mnist", Split(images[:n], labels[:n]), Split(images[n:2 * n], labels[n:2 * n]),
                      Split(images[2 * n:], labels[2 * n:]), "random test images")


@pytest.mark.parametrize("n, round_images", [(50, None), (50, 50), (50, 20), (50, 120)])
def test_a_round_is_an_epoch_or_its_number_of_images_without_repeats_within_a_pass(n, round_images):
    order = round_indices(n, round_images, torch.Generator().manual_seed(0))
    assert len(order) == (round_images or n)
    for first in range(0, len(order), n):
        chunk = order[first:first + n].tolist()
        assert len(set(chunk)) == len(chunk) and all(0 <= i < n for i in chunk)


def test_rounds_count_images_and_epochs():
    data = _tiny_data()
    result = fit(ModelConfig(16, 2), TrainConfig(rounds=3, round_images=40, batch_size=16), data,
                 device=torch.device("cpu"))
    assert [h["round"] for h in result.history] == [1, 2, 3]
    assert [h["images"] for h in result.history] == [40, 80, 120]
    assert result.history[-1]["epochs"] == pytest.approx(120 / 96)
    assert [h["last_round"] for h in result.history] == [False, False, True]


def test_validation_can_use_the_first_images_of_the_split():
    data = _tiny_data()
    partial = fit(ModelConfig(16, 2), TrainConfig(rounds=1, val_images=10, seed=1), data, device=torch.device("cpu"))
    full = fit(ModelConfig(16, 2), TrainConfig(rounds=1, seed=1), data, device=torch.device("cpu"))
    assert partial.history[0]["train_neg_elbo"] == full.history[0]["train_neg_elbo"]
    assert partial.history[0]["val_neg_elbo"] != full.history[0]["val_neg_elbo"]


def test_cosine_segments_decay_to_near_zero_at_each_end_and_restart():
    plan = CosineSegments([4, 10], restart=0.5)
    values = [plan(step) for step in range(10)]
    assert values[0] == 1.0 and values[4] == 0.5
    assert values[3] < 0.2 and values[9] < 0.05
    assert all(a > b for a, b in zip(values[:4], values[1:4], strict=False))
    assert plan.end == 10


def test_fit_to_decays_from_the_current_value_by_a_sooner_end_and_can_get_the_plan_back():
    plan = CosineSegments([100])
    before = plan(20)
    plan.fit_to(20, 30)
    assert plan.end == 30 and plan(20) == pytest.approx(before) and plan(29) < 0.05 * before
    plan.fit_to(21, 200)  # more time again: back to the planned end, never past it
    assert plan.end == 100
    plan.fit_to(22, 22)  # no time at all: one more round at most
    assert plan.end == 23


def test_a_deadline_anneals_a_cosine_run_to_end_by_it():
    data = _tiny_data()
    config = TrainConfig(rounds=10_000, batch_size=32, lr=1e-3, lr_schedule="cosine")
    result = fit(ModelConfig(16, 2), config, data, device=torch.device("cpu"), deadline=time.time() + 1.0)
    rates = [h["lr"] for h in result.history]
    assert 2 <= len(rates) < 10_000 and result.history[-1]["last_round"]
    assert rates[-1] < 0.2 * rates[0]  # annealed, not cut at the top


def test_rounds_before_keeps_half_a_round_in_hand():
    assert rounds_before(deadline=100.0, now=90.0, seconds_per_round=2.0) == 4
    assert rounds_before(deadline=100.0, now=99.5, seconds_per_round=2.0) == 0


def test_the_scheduler_state_carries_the_plan(tmp_path):
    model = build_model(ModelConfig(16, 2))
    config = TrainConfig(rounds=50, lr_schedule="cosine")
    from vae.train import make_lr_scheduler, make_optimizer
    scheduler = make_lr_scheduler(make_optimizer(model, config), config)
    cosine_plan(scheduler).fit_to(5, 12)
    state = scheduler.state_dict()
    other = make_lr_scheduler(make_optimizer(build_model(ModelConfig(16, 2)), config), config)
    other.load_state_dict(state)
    assert cosine_plan(other).end == 12


def test_iwae_within_a_time_bound_reports_its_standard_error():
    torch.manual_seed(0)
    model = build_model(ModelConfig(16, 2))
    images = _tiny_data().test.images
    everything = iwae_within(model, images, k=5, seconds=60.0, min_images=10)
    assert everything.images == len(images) and everything.k == 5
    per_image = iwae_per_image(model, images, k=5)
    assert everything.standard_error == pytest.approx(float(per_image.std()) / math.sqrt(len(images)), rel=0.3)
    quick = iwae_within(model, images, k=5, seconds=0.0, min_images=10, image_batch=10)
    assert quick.images == 10 and math.isfinite(quick.mean)


def test_packed_splits_unpack_to_the_same_images():
    data = _tiny_data()
    data = DataSplits("mnist", Split((data.train.images * 255).round() / 255, data.train.labels), data.val, data.test,
                      data.source)
    unpacked = PackedSplits.pack(data).unpack()
    assert torch.equal(unpacked.train.images, data.train.images) and torch.equal(unpacked.test.labels,
                                                                                 data.test.labels)


def test_class_gaussians_can_be_fitted_on_a_few_images_per_class():
    data = _tiny_data()
    model = build_model(ModelConfig(16, 2))
    few = fit_class_gaussians(model, data.train.images, data.train.labels, 4, max_per_class=5)
    assert few.counts.tolist() == [5, 5, 5, 5]


def test_older_training_configs_read_epochs_as_rounds():
    config = TrainConfig.from_dict({"lr": 1e-3, "epochs": 7, "warmup_epochs": 2, "lr_schedule": "cosine",
                                    "unknown": 1})
    assert config.rounds == 7 and config.warmup_rounds == 2 and config.round_images is None
