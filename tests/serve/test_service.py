"""serve.service in-process: validation, determinism, what each view returns, and model switching."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serve.experiment import ExperimentError, load_experiment
from serve.service import MAX_SAMPLES, InvalidRequest, VAEService
from vae.checkpoint import EXAMPLES_FILE, save_checkpoint
from vae.config import ModelConfig
from vae.model import build_model
from vae.sample import reconstruct

CELL = 30  # a 28-pixel image plus make_grid's 2-pixel padding


def cell(grid: np.ndarray, index: int, ncol: int) -> np.ndarray:
    row, col = divmod(index, ncol)
    return grid[2 + row * CELL : 2 + row * CELL + 28, 2 + col * CELL : 2 + col * CELL + 28]


def bank(checkpoint, class_index: int) -> np.ndarray:
    """The checkpoint's real examples of one class as uint8 [k, 28, 28]."""
    images = checkpoint.examples.images[checkpoint.examples.labels == class_index]
    return (images * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()


@pytest.fixture(scope="module")
def service(experiment: Path) -> VAEService:
    return VAEService.from_experiment(experiment)


def test_serves_the_best_trial(service: VAEService) -> None:
    info = service.model_info()
    assert (info["serving"], info["trial_id"], info["experiment"]) == ("best", "t_wide", "exp")
    assert info["model_config"]["latent_width"] == 96 and info["example_images"] == 320
    columns, rows = service.leaderboard()
    assert [r[columns.index("trial_id")] for r in rows] == ["t_wide", "t_narrow", "t_failed"]
    assert rows[0][columns.index("mark")] == "best + serving" and rows[1][columns.index("mark")] == ""
    assert service.switchable_trials() == ["t_wide", "t_narrow"]


def test_generate_draws_from_real_examples_of_the_class(service: VAEService) -> None:
    out = service.generate(7, 16, 1.0, seed=3, n_sources=2)
    assert out.examples.shape == (32, 62) and out.samples.shape == (62, 242)
    assert out.examples.dtype == np.uint8 and out.samples.dtype == np.uint8
    sevens = bank(service.served.checkpoint, 7)
    for i in range(2):
        assert any(np.array_equal(cell(out.examples, i, 2), real) for real in sevens)
    samples = [cell(out.samples, i, 8) for i in range(16)]
    assert all(s.max() > 100 for s in samples)  # ink, not blank cells
    assert not np.array_equal(samples[0], samples[2])  # same source, different posterior draws


def test_generate_is_deterministic_per_seed(service: VAEService) -> None:
    a, b = service.generate(2, 8, 1.0, 11), service.generate(2, 8, 1.0, 11)
    c = service.generate(2, 8, 1.0, 12)
    assert np.array_equal(a.samples, b.samples) and np.array_equal(a.examples, b.examples)
    assert not np.array_equal(a.samples, c.samples)


def test_noise_scale_zero_decodes_the_posterior_mean(service: VAEService) -> None:
    out = service.generate(4, 3, 0.0, seed=5)
    assert out.examples.shape == (28, 28)  # a single image comes unpadded
    source = torch.from_numpy(out.examples).float().div(255).reshape(1, 784)
    expected = reconstruct(service.served.checkpoint.model, source).mul(255).round().to(torch.uint8)[0, 0].numpy()
    for i in range(3):
        assert np.abs(cell(out.samples, i, 3).astype(int) - expected).max() <= 1


def test_prior_shapes_and_temperature(service: VAEService) -> None:
    grid = service.prior(5, 1.0, seed=0)
    assert grid.shape == (32, 152)
    assert np.array_equal(grid, service.prior(5, 1.0, seed=0))
    still = service.prior(3, 0.0, seed=9)  # temperature 0: every code is 0, so all cells are equal
    assert np.array_equal(cell(still, 0, 3), cell(still, 2, 3))
    assert service.prior(MAX_SAMPLES, 1.0, 0).shape == (8 * CELL + 2, 8 * CELL + 2)


def test_interpolate_runs_between_two_chosen_examples(service: VAEService) -> None:
    grid = service.interpolate(1, 7, steps=6, example_a=3, example_b=0)
    assert grid.shape == (32, 8 * CELL + 2)
    checkpoint = service.served.checkpoint
    assert np.array_equal(cell(grid, 0, 8), bank(checkpoint, 1)[3])
    assert np.array_equal(cell(grid, 7, 8), bank(checkpoint, 7)[0])
    assert not np.array_equal(cell(grid, 1, 8), cell(grid, 6, 8))


def test_reconstruct_takes_a_28x28_image_as_is(service: VAEService, tmp_path: Path) -> None:
    three = bank(service.served.checkpoint, 3)[0]
    Image.fromarray(three).save(tmp_path / "three.png")
    out = service.reconstruct(tmp_path / "three.png")
    assert np.array_equal(out.model_input, three)
    assert out.reconstruction.shape == (28, 28)
    assert 20 < out.neg_elbo < 2000 and out.neg_elbo == pytest.approx(out.recon + out.kl, rel=1e-5)
    assert service.reconstruct(tmp_path / "three.png").neg_elbo == out.neg_elbo  # seeded estimate


def test_reconstruct_prepares_a_drawing_like_mnist(service: VAEService) -> None:
    drawing = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # transparent canvas, dark ink
    drawing.paste((0, 0, 0, 255), (140, 40, 160, 160))  # a vertical bar: a "1"
    out = service.reconstruct(drawing)
    assert out.model_input.shape == (28, 28)
    assert out.model_input[0].max() == 0 and out.model_input[:, 0].max() == 0  # black border
    rows = np.flatnonzero(out.model_input.max(axis=1) > 25)
    assert 19 <= len(rows) <= 21  # the 120-pixel bar scaled to MNIST's 20-pixel box
    assert abs(rows.mean() - 13.5) <= 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.generate(10, 16, 1.0, 0), "class must be between 0 and 9"),
        (lambda s: s.generate(-1, 16, 1.0, 0), "class must be between 0 and 9"),
        (lambda s: s.generate(3, 0, 1.0, 0), "number of samples must be between 1 and 64"),
        (lambda s: s.generate(3, 65, 1.0, 0), "number of samples must be between 1 and 64"),
        (lambda s: s.generate(3, 2.5, 1.0, 0), "whole number"),
        (lambda s: s.generate(3, 4, float("nan"), 0), "finite"),
        (lambda s: s.generate(3, 4, 3.5, 0), "noise scale must be between 0 and 3"),
        (lambda s: s.generate(3, 4, 1.0, -1), "seed must be between 0"),
        (lambda s: s.generate(3, 4, 1.0, 2**40), "seed must be between 0"),
        (lambda s: s.generate(3, 4, 1.0, None), "seed must be a number"),
        (lambda s: s.generate(3, 4, 1.0, "7"), "seed must be a number"),
        (lambda s: s.generate(3, 4, 1.0, 0, n_sources=9), "real examples must be between 1 and 8"),
        (lambda s: s.prior(10**9, 1.0, 0), "number of samples must be between 1 and 64"),
        (lambda s: s.prior(4, -0.1, 0), "temperature must be between 0 and 3"),
        (lambda s: s.interpolate(1, 2, 1), "steps must be between 2 and 32"),
        (lambda s: s.interpolate(1, 2, 10**6), "steps must be between 2 and 32"),
        (lambda s: s.interpolate(1, 2, 5, example_a=32), "first example must be between 0 and 31"),
        (lambda s: s.reconstruct(None), "draw a digit or upload an image"),
        (lambda s: s.reconstruct(Image.new("L", (50, 50), 255)), "blank"),
        (lambda s: s.reconstruct(Image.new("L", (5000, 4000))), "too large"),
        (lambda s: s.switch_model("nope"), "no trial 'nope'"),
        (lambda s: s.switch_model("t_failed"), "left no checkpoint"),
        (lambda s: s.switch_model(None), "choose a trial"),
    ],
)
def test_invalid_inputs_are_refused_with_a_message(service: VAEService, call, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        call(service)
    assert service.served.trial_id == "t_wide"


@pytest.mark.parametrize("side", [5000, 20000])  # above the app's cap; above Pillow's own bomb limit
def test_non_images_and_huge_headers_are_refused_before_decoding(service: VAEService, tmp_path: Path,
                                                                  pixelless_png, side: int) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InvalidRequest, match="not an image"):
        service.reconstruct(tmp_path / "notes.png")
    huge = tmp_path / "huge.png"
    huge.write_bytes(pixelless_png(side, side))  # had it been decoded, it would fail as truncated
    with pytest.raises(InvalidRequest, match="too large"):
        service.reconstruct(huge)


def test_switching_is_atomic_under_concurrent_requests(experiment: Path) -> None:
    service = VAEService.from_experiment(experiment)
    expected = {}
    for trial in ("t_narrow", "t_wide"):
        service.switch_model(trial)
        expected[trial] = service.generate(5, 16, 1.0, seed=42).samples
    assert not np.array_equal(expected["t_wide"], expected["t_narrow"])
    results, errors = [], []

    def ask() -> None:
        try:
            for _ in range(15):
                results.append(service.generate(5, 16, 1.0, seed=42).samples)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        service.switch_model(("t_narrow", "t_wide")[i % 2])
    for t in threads:
        t.join()
    assert not errors and len(results) == 60
    assert all(any(np.array_equal(r, e) for e in expected.values()) for r in results)
    assert service.served.trial_id == "t_wide" and service.model_info()["serving"] == "trials/t_wide"


def test_a_broken_trial_checkpoint_leaves_the_served_model(experiment: Path, tmp_path: Path) -> None:
    copy = tmp_path / "exp"
    shutil.copytree(experiment, copy)
    (copy / "best" / "trials" / "t_narrow" / "model.safetensors").write_bytes(b"truncated")
    service = VAEService.from_experiment(copy)
    before = service.generate(1, 4, 1.0, 0).samples
    with pytest.raises(InvalidRequest, match="cannot serve trial t_narrow"):
        service.switch_model("t_narrow")
    assert service.served.trial_id == "t_wide"
    assert np.array_equal(service.generate(1, 4, 1.0, 0).samples, before)


def test_leaderboard_paths_cannot_leave_best(experiment: Path, tmp_path: Path) -> None:
    copy = tmp_path / "exp"
    shutil.copytree(experiment, copy)
    board = copy / "best" / "leaderboard.json"
    rows = json.loads(board.read_text())
    rows[1]["checkpoint"] = "../../../elsewhere"
    board.write_text(json.dumps(rows))
    with pytest.raises(ExperimentError, match="points outside best/"):
        load_experiment(copy).trial_checkpoint("t_narrow")
    with pytest.raises(InvalidRequest, match="points outside best/"):
        VAEService.from_experiment(copy).switch_model("t_narrow")


def test_a_checkpoint_without_examples_still_samples_the_prior(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ckpt", build_model(ModelConfig(16, 2)), dataset="fashion-mnist")
    assert not (tmp_path / "ckpt" / EXAMPLES_FILE).exists()
    service = VAEService.from_checkpoint(tmp_path / "ckpt")
    assert service.served.class_names[0] == "T-shirt/top" and service.leaderboard()[1] == []
    assert service.prior(2, 1.0, 0).shape == (32, 62)
    with pytest.raises(InvalidRequest, match="no example images"):
        service.generate(0, 4, 1.0, 0)
    with pytest.raises(InvalidRequest, match="no leaderboard"):
        service.switch_model("t_wide")


def test_not_an_experiment(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="not an exported experiment"):
        load_experiment(tmp_path)
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "leaderboard.json").write_text('{"rows": 1}')
    with pytest.raises(ExperimentError, match="not a leaderboard"):
        load_experiment(tmp_path)
