"""A search on a user's own images (issue: search and serve a user's own images): the data adapts the search
(rounds of as many pixels, no stem where the sides are not divisible by 4), and a smoke search on a labelled
32x32 RGB folder with a corrupt file exports a model whose checkpoint names the classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.config import SearchConfig
from search.tuner import fit_to_data, run_search
from vae.checkpoint import load_checkpoint
from vae.data import load_splits


def _rgb_folder(root: Path, classes: tuple[str, ...], per_class: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 64, size=(side, side, 3), dtype=np.uint8)
            pixels[..., k % 3] += 160  # each class its own dominant colour
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def test_rounds_hold_as_many_pixels_and_the_stem_needs_sides_divisible_by_4(tmp_path):
    folder = _rgb_folder(tmp_path / "d", ("a", "b"), 20, 30)
    data = load_splits(str(folder), log_fn=lambda _: None)
    notes: list[str] = []
    config = fit_to_data(SearchConfig(dataset=str(folder)), data, notes.append)
    assert config.round_images == round(8000 * 784 / (3 * 30 * 30))
    assert config.space["conv_channels"] == (0,) and any("not divisible by 4" in n for n in notes)
    assert [p["latent_width"] for p in config.warm_start_points] == [512, 400]  # the stem's known point left
    assert fit_to_data(SearchConfig(round_images=500), data, notes.append).round_images == 500


@pytest.mark.slow
def test_a_smoke_search_on_a_labelled_rgb_folder_exports_a_model_that_names_its_classes(local_ray, tmp_path):
    folder = _rgb_folder(tmp_path / "shapes", ("circle", "square", "star"), 80, 32)
    (folder / "square" / "corrupt.png").write_bytes(b"not a png at all")
    lines: list[str] = []
    config = SearchConfig(dataset=str(folder), trials=2, max_rounds=2, grace_period=1, max_concurrent=2,
                          storage=str(tmp_path / "results"), name="shapes", wandb_mode="disabled", verbose=0,
                          iwae_k=10, time_budget_s=None)
    outcome = run_search(config, log=lines.append)
    assert any("skipped 1 of 241 files" in line and "corrupt.png" in line for line in lines)
    best = load_checkpoint(outcome.best_dir)
    assert best.class_names == ("circle", "square", "star") and best.config.image_shape == (3, 32, 32)
    assert best.class_gaussians is not None and best.class_gaussians.num_classes == 3
    assert best.examples is not None and best.examples.images.shape[1] == 3 * 32 * 32
    assert "test_bits_per_dim" in best.meta["metrics"]
