"""A user's own images as a data set (vae.own_data through vae.data.load_splits): image folders (classes or
unlabelled, grayscale or RGB) and .npz files, built on the fly; bad files skipped and reported, the rest of the
refusals one line naming what is wrong; and a model trained on them round-trips its class names."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae.checkpoint import load_checkpoint, save_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.data import DataError, load_splits
from vae.own_data import MAX_BAD_SHARE, is_own_data
from vae.train import fit


def _image(side: int, rgb: bool, seed: int, height: int | None = None) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (height or side, side, 3) if rgb else (height or side, side)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


def _folder(root: Path, classes: dict[str, int], *, side: int = 32, rgb: bool = False, fmt: str = "PNG") -> Path:
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            _image(side, rgb, 1000 * k + i).save(root / name / f"{i:03d}.{fmt.lower()}", format=fmt)
    return root


def _quiet(_message: str) -> None:
    pass


def test_a_labelled_folder_is_split_by_class_with_the_folder_names(tmp_path):
    folder = _folder(tmp_path / "shapes", {"circle": 30, "square": 20, "triangle": 40}, rgb=True)
    data = load_splits(str(folder), log_fn=_quiet)
    assert data.image_shape == (3, 32, 32) and data.class_names == ("circle", "square", "triangle")
    assert len(data.train) + len(data.val) + len(data.test) == 90 and data.labelled
    assert data.train.images.shape[1] == 3 * 32 * 32
    for split in (data.train, data.val, data.test):
        assert set(split.labels.tolist()) == {0, 1, 2}  # stratified: every class in every part
    assert is_own_data(str(folder)) and not is_own_data("mnist")


def test_the_first_images_of_every_split_mix_the_classes_of_a_class_by_class_folder(tmp_path):
    """Trials validate on the first N validation images and sample grids show the first test images; a
    folder lists its images class by class, so the splits must not keep that order."""
    folder = _folder(tmp_path / "layout", {"train/a": 40, "train/b": 40, "train/c": 40,
                                           "test/a": 10, "test/b": 10, "test/c": 10}, side=16)
    data = load_splits(str(folder), log_fn=_quiet)
    for split in (data.train, data.val, data.test):
        labels = split.labels.tolist()
        assert labels != sorted(labels)
        assert len(set(labels[: len(labels) // 2])) == 3, labels
    again = load_splits(str(folder), log_fn=_quiet)
    assert torch.equal(again.val.images, data.val.images)  # seeded: the same order every time


def test_an_unlabelled_grayscale_folder_splits_at_random(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(50):
        _image(20, False, i).save(folder / f"{i}.jpg", format="JPEG")
    data = load_splits(str(folder), log_fn=_quiet)
    assert data.image_shape == (1, 20, 20) and data.class_names == () and not data.labelled
    assert set(data.train.labels.tolist()) == {-1} and len(data.train) == 40


def test_a_corrupt_file_is_skipped_and_reported_in_one_line(tmp_path):
    folder = _folder(tmp_path / "d", {"a": 80, "b": 80, "c": 80}, rgb=True)
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    said: list[str] = []
    data = load_splits(str(folder), log_fn=said.append)
    assert len(data.train) + len(data.val) + len(data.test) == 240
    skipped = [line for line in said if line.startswith("data: skipped")]
    assert len(skipped) == 1 and "1 of 241" in skipped[0] and "broken.png" in skipped[0]


def test_more_than_one_percent_bad_files_refuse_the_data_set(tmp_path):
    folder = _folder(tmp_path / "d", {"a": 20, "b": 20})
    for i in range(2):
        (folder / "a" / f"bad{i}.png").write_text("text, not an image")
    assert 2 > MAX_BAD_SHARE * 42
    with pytest.raises(DataError, match="2 of 42 files .* cannot be read") as info:
        load_splits(str(folder), log_fn=_quiet)
    assert "\n" not in str(info.value)


def test_a_file_of_another_format_never_reaches_its_decoder(tmp_path):
    folder = _folder(tmp_path / "d", {"a": 60, "b": 60})
    _image(32, False, 7).save(folder / "a" / "sneaky.png", format="TIFF")  # a TIFF named .png
    said: list[str] = []
    load_splits(str(folder), log_fn=said.append)
    assert any("sneaky.png" in line for line in said)


def test_mixed_sizes_need_image_size_and_are_resized_with_it(tmp_path):
    folder = _folder(tmp_path / "d", {"a": 15, "b": 15}, side=32)
    _image(40, False, 99).save(folder / "b" / "big.png")
    with pytest.raises(DataError, match=r"big\.png is 40x40 pixels, others 32x32: pass --image-size") as info:
        load_splits(str(folder), log_fn=_quiet)
    assert "\n" not in str(info.value)
    data = load_splits(str(folder), image_size=24, log_fn=_quiet)
    assert data.image_shape == (1, 24, 24)


def test_sides_outside_16_to_64_need_image_size(tmp_path):
    folder = _folder(tmp_path / "d", {"a": 12, "b": 12}, side=96)
    with pytest.raises(DataError, match="96x96 pixels; sides from 16 to 64"):
        load_splits(str(folder), log_fn=_quiet)
    assert load_splits(str(folder), image_size=32, log_fn=_quiet).image_shape == (1, 32, 32)


def test_a_class_too_small_for_the_split_is_named_with_its_count(tmp_path):
    folder = _folder(tmp_path / "d", {"many": 40, "few": 3})
    with pytest.raises(DataError, match=r"class 'few' has 3 image\(s\); each class needs at least 10"):
        load_splits(str(folder), log_fn=_quiet)


def test_a_folder_with_both_layouts_is_refused(tmp_path):
    folder = _folder(tmp_path / "d", {"a": 12})
    _image(32, False, 1).save(folder / "loose.png")
    with pytest.raises(DataError, match="both images .* and class sub-folders"):
        load_splits(str(folder), log_fn=_quiet)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def test_an_npz_with_labels_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(60) % 3
    path = _npz(tmp_path / "d.npz", images=images, labels=labels, class_names=np.array(["x", "y", "z"]))
    data = load_splits(str(path), log_fn=_quiet)
    assert data.image_shape == (3, 16, 16) and data.class_names == ("x", "y", "z")
    first = data.train.images[0].reshape(3, 16, 16)
    assert first.min() >= 0 and first.max() <= 1
    unlabelled = load_splits(str(_npz(tmp_path / "u.npz", images=images[..., 0])), log_fn=_quiet)
    assert unlabelled.image_shape == (1, 16, 16) and not unlabelled.labelled
    numbered = load_splits(str(_npz(tmp_path / "n.npz", images=images, labels=labels)), log_fn=_quiet)
    assert numbered.class_names == ("0", "1", "2")


@pytest.mark.parametrize("arrays, fragment", [
    ({"pixels": np.zeros((20, 16, 16), np.uint8)}, "no 'images' array"),
    ({"images": np.zeros((20, 16, 16), np.float32)}, "must be uint8"),
    ({"images": np.zeros((20, 16, 16, 4), np.uint8)}, "must be uint8"),
    ({"images": np.zeros((20, 16, 16), np.uint8), "labels": np.zeros(19, np.int64)}, "'labels' .* must be 20"),
    ({"images": np.zeros((20, 16, 16), np.uint8), "labels": np.full(20, -1)}, "must be >= 0"),
    ({"images": np.zeros((20, 8, 8), np.uint8)}, "sides from 16 to 64"),
])
def test_a_bad_npz_is_refused_in_one_line(tmp_path, arrays, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        load_splits(str(_npz(tmp_path / "bad.npz", **arrays)), log_fn=_quiet)
    assert "\n" not in str(info.value)


def test_an_npz_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"boom": 1}], dtype=object), allow_pickle=True)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", buffer.getvalue())
    with pytest.raises(DataError, match="holds Python objects"):
        load_splits(str(path), log_fn=_quiet)


def test_a_model_on_colour_images_saves_and_loads_its_class_names(tmp_path):
    folder = _folder(tmp_path / "d", {"red": 20, "green": 20}, side=16, rgb=True)
    data = load_splits(str(folder), log_fn=_quiet)
    config = ModelConfig(32, 4, conv_channels=4, channels=3, height=16, width=16)
    result = fit(config, TrainConfig(rounds=1, batch_size=16), data, device=torch.device("cpu"))
    save_checkpoint(tmp_path / "ckpt", result.model, dataset=str(folder), examples=data.test,
                    class_names=data.class_names)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.class_names == ("green", "red") and loaded.config.image_shape == (3, 16, 16)  # sorted
    assert loaded.meta["family"] == "conv" and loaded.examples.images.shape[1] == 3 * 16 * 16


def test_a_folder_split_beforehand_keeps_its_test_split(tmp_path):
    root = tmp_path / "split"
    _folder(root / "train", {"a": 30, "b": 30})
    _folder(root / "test", {"a": 5, "b": 6})
    data = load_splits(str(root), log_fn=_quiet)
    assert len(data.test) == 11 and len(data.train) + len(data.val) == 60 and data.class_names == ("a", "b")
    _folder(tmp_path / "other" / "train", {"a": 30})
    _folder(tmp_path / "other" / "test", {"z": 12})
    with pytest.raises(DataError, match="differ"):
        load_splits(str(tmp_path / "other"), log_fn=_quiet)
