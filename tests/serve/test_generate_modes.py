"""serve.service's two generation modes, and following a running search (in-process, a hand-written
experiment folder that grows as a search's does)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_search import FakeSearch

from search.layout import BEST_DIR, LEADERBOARD_JSON
from serve.service import CLASS_GAUSSIAN, EXAMPLES, InvalidRequest, NoCheckpointYet, VAEService
from vae.checkpoint import load_checkpoint, save_checkpoint
from vae.class_gaussians import fit_class_gaussians
from vae.data import DataSplits

CELL = 30


def cells(grid: np.ndarray, n: int, ncol: int) -> np.ndarray:
    rows, cols = [2 + (i // ncol) * CELL for i in range(n)], [2 + (i % ncol) * CELL for i in range(n)]
    return np.stack([grid[r : r + 28, c : c + 28] for r, c in zip(rows, cols, strict=True)]).astype(np.float32) / 255


@pytest.fixture(scope="module")
def gaussian_checkpoint(trained_checkpoint: Path, mnist_splits: DataSplits, tmp_path_factory) -> Path:
    """The shared trained model, saved as the export now saves it: examples bank and class Gaussians."""
    saved = load_checkpoint(trained_checkpoint)
    gaussians = fit_class_gaussians(saved.model, mnist_splits.train.images, mnist_splits.train.labels, 10)
    return save_checkpoint(tmp_path_factory.mktemp("gauss") / "checkpoint", saved.model, dataset="mnist",
                           metrics=saved.meta["metrics"], examples=mnist_splits.test, class_gaussians=gaussians)


@pytest.mark.parametrize("mode", [CLASS_GAUSSIAN, EXAMPLES])
def test_each_mode_is_deterministic_per_seed_and_of_the_requested_shape(gaussian_checkpoint: Path, mode: str) -> None:
    service = VAEService.from_checkpoint(gaussian_checkpoint)
    a = service.generate(3, 12, 1.0, 7, 2, mode)
    b = service.generate(3, 12, 1.0, 7, 2, mode)
    c = service.generate(3, 12, 1.0, 8, 2, mode)
    assert np.array_equal(a.samples, b.samples) and np.array_equal(a.examples, b.examples)
    assert not np.array_equal(a.samples, c.samples)
    assert a.samples.shape == (2 * CELL + 2, 8 * CELL + 2)  # 12 samples, 8 a row
    # class mean (one unpadded image) for the Gaussian; the two real examples for the posteriors
    assert a.examples.shape == ((28, 28) if mode == CLASS_GAUSSIAN else (32, 62))


def test_class_gaussian_samples_look_like_their_class(gaussian_checkpoint: Path, mnist_splits: DataSplits) -> None:
    """Judged by the nearest class-mean image of the real test digits, samples of 0, 1 and 7 are mostly of that
    class, and they differ from each other (not sixteen copies)."""
    service = VAEService.from_checkpoint(gaussian_checkpoint)
    centroids = torch.stack([mnist_splits.test.images[mnist_splits.test.labels == c].mean(0) for c in range(10)])
    for cls in (0, 1, 7):
        samples = torch.from_numpy(cells(service.generate(cls, 16, 0.75, 0, 1, CLASS_GAUSSIAN).samples, 16, 8))
        nearest = torch.cdist(samples.reshape(16, -1), centroids).argmin(dim=1)
        assert (nearest == cls).float().mean() >= 0.6, (cls, nearest.tolist())
        assert torch.pdist(samples.reshape(16, -1)).min() > 0.5


def test_noise_scale_zero_decodes_the_class_mean(gaussian_checkpoint: Path) -> None:
    service = VAEService.from_checkpoint(gaussian_checkpoint)
    out = service.generate(4, 3, 0.0, 1, 1, CLASS_GAUSSIAN)
    for sample in cells(out.samples, 3, 3):
        assert np.abs(sample * 255 - out.examples.astype(np.float32)).max() <= 1


def test_the_default_mode_is_the_class_gaussian_where_the_checkpoint_has_it(gaussian_checkpoint: Path,
                                                                             trained_checkpoint: Path) -> None:
    new, old = VAEService.from_checkpoint(gaussian_checkpoint), VAEService.from_checkpoint(trained_checkpoint)
    assert np.array_equal(new.generate(2, 4, 1.0, 0).samples, new.generate(2, 4, 1.0, 0, 1, CLASS_GAUSSIAN).samples)
    assert np.array_equal(old.generate(2, 4, 1.0, 0).samples, old.generate(2, 4, 1.0, 0, 1, EXAMPLES).samples)
    assert new.model_info()["generate_modes"] == [CLASS_GAUSSIAN, EXAMPLES]
    assert old.model_info()["generate_modes"] == [EXAMPLES]


def test_an_older_checkpoint_serves_examples_and_explains_the_new_mode(trained_checkpoint: Path) -> None:
    service = VAEService.from_checkpoint(trained_checkpoint)
    assert service.generate(5, 4, 1.0, 0, 1, EXAMPLES).samples.shape == (32, 122)
    with pytest.raises(InvalidRequest, match='no class Gaussians .* use the mode "examples"'):
        service.generate(5, 4, 1.0, 0, 1, CLASS_GAUSSIAN)


@pytest.mark.parametrize("mode", ["gaussian", "", None, 3, "EXAMPLES"])
def test_unknown_modes_are_refused(gaussian_checkpoint: Path, mode) -> None:
    service = VAEService.from_checkpoint(gaussian_checkpoint)
    if mode is None:  # None means the default, not an error
        assert service.generate(1, 2, 1.0, 0, 1, mode).samples.shape == (32, 62)
        return
    with pytest.raises(InvalidRequest, match="mode must be one of class_gaussian, examples"):
        service.generate(1, 2, 1.0, 0, 1, mode)


# ---- following a running search -----------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


class ReadOnlyCheck:
    """Calls through this check that the service writes nothing into the experiment folder."""

    def __init__(self, service: VAEService, root: Path) -> None:
        self.service, self.root = service, root

    def __getattr__(self, name: str):
        method = getattr(self.service, name)

        def call(*args):
            before = _snapshot(self.root)
            result = method(*args)
            assert _snapshot(self.root) == before, f"{name} wrote into the experiment"
            return result

        return call


def test_follow_serves_the_best_so_far_and_switches_to_each_new_best(tmp_path: Path, trained_checkpoint: Path,
                                                                     gaussian_checkpoint: Path,
                                                                     mnist_data_dir: Path) -> None:
    search = FakeSearch(tmp_path / "exp")
    search.trial("aaa", latent_width=128, reparam_width=16, lr=1e-3)
    search.trial("bbb", latent_width=128, reparam_width=16, lr=3e-3)
    with pytest.raises(NoCheckpointYet, match="no trial checkpoint yet"):
        VAEService.from_experiment(search.root)
    search.report("aaa", 1, 200.0, checkpoint_from=gaussian_checkpoint)
    before = _snapshot(search.root)
    follower = VAEService.from_experiment(search.root)
    assert _snapshot(search.root) == before
    service = ReadOnlyCheck(follower, search.root)
    info = service.model_info()
    assert (info["serving"], info["trial_id"], info["round"], info["following"]) == ("trial aaa, round 1", "aaa", 1,
                                                                                     True)
    # A trial checkpoint carries its examples bank and class Gaussians: nothing of the data set is loaded here.
    assert info["example_images"] == 320 and info["generate_modes"] == [CLASS_GAUSSIAN, EXAMPLES]
    assert service.generate(3, 4, 1.0, 0, 1, CLASS_GAUSSIAN).samples.shape == (32, 122)

    assert not service.refresh()  # nothing new
    search.report("bbb", 1, 210.0, checkpoint_from=trained_checkpoint)
    assert not service.refresh() and follower.served.trial_id == "aaa"  # worse: stays
    search.report("bbb", 2, 150.0, checkpoint_from=gaussian_checkpoint)
    assert service.refresh()
    assert service.model_info()["serving"] == "trial bbb, round 2"
    columns, rows = service.leaderboard()
    assert [r[columns.index("trial_id")] for r in rows] == ["bbb", "aaa"]
    assert rows[0][columns.index("mark")] == "best so far + serving"

    service.set_follow(False)
    search.report("aaa", 2, 120.0, checkpoint_from=trained_checkpoint)
    assert not service.refresh() and follower.served.trial_id == "bbb"
    service.set_follow(True)
    assert service.refresh() and service.model_info()["serving"] == "trial aaa, round 2"
    with pytest.raises(InvalidRequest, match="still running"):
        service.switch_model("bbb")

    # The search ends: its export appears, and the follower serves best/.
    best = search.root / BEST_DIR
    shutil.copytree(gaussian_checkpoint, best)
    (best / LEADERBOARD_JSON).write_text(json.dumps([{"trial_id": "aaa", "is_best": True, "checkpoint": None}]))
    assert service.refresh()
    info = service.model_info()
    assert (info["serving"], info["trial_id"], info["following"]) == ("best", "aaa", False)


def test_a_checkpoint_deleted_under_the_follower_leaves_the_served_model(tmp_path: Path, trained_checkpoint: Path,
                                                                         mnist_data_dir: Path) -> None:
    search = FakeSearch(tmp_path / "exp")
    search.trial("aaa", latent_width=128, reparam_width=16, lr=1e-3)
    search.report("aaa", 1, 200.0, checkpoint_from=trained_checkpoint)
    service = VAEService.from_experiment(search.root)
    path = search.report("aaa", 2, 150.0, checkpoint_from=trained_checkpoint)
    (path / "model.safetensors").write_bytes(b"half-copied")
    assert not service.refresh() and service.model_info()["round"] == 1
