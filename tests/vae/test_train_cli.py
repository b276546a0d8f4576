"""`python -m vae.train`: end to end, and one clear line with exit status 2 for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vae.checkpoint import load_checkpoint
from vae.data import DATA_DIR_ENV
from vae.train import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], data_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{DATA_DIR_ENV: str(data_dir)})
    return subprocess.run([sys.executable, "-m", "vae.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_trains_and_writes_checkpoint_and_png(mnist_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _run(["--latent-width", "32", "--reparam-width", "4", "--rounds", "1", "--device", "cpu",
                   "--out", str(out)], mnist_data_dir, REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "stratified" in result.stderr  # the one-split data source is said in the log
    assert "test neg-ELBO" in result.stdout and "nats" in result.stdout
    checkpoint = load_checkpoint(out / "checkpoint")
    assert checkpoint.config.latent_width == 32 and checkpoint.config.reparam_width == 4
    assert checkpoint.meta["metrics"]["round"] == 1
    assert 100 < checkpoint.meta["metrics"]["test_neg_elbo"] < 543  # better than an untrained model
    assert checkpoint.examples is not None
    assert checkpoint.class_gaussians is not None and checkpoint.class_gaussians.means.shape == (10, 4)
    with Image.open(out / "samples.png") as png:
        # 32 prior samples, 32 originals, 32 reconstructions in rows of 16 tiles of 28 + 2 padding.
        assert png.size == (16 * 30 + 2, 6 * 30 + 2)


def _one_error_line(stderr: str) -> str:
    """The last line says what is wrong; the only other lines allowed are the data log line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert lines and lines[-1].startswith("error: "), stderr
    assert all(line.startswith("data: ") for line in lines[:-1]), stderr
    return lines[-1]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--latent-width", "0"], "latent_width must be a positive integer"),
        (["--reparam-width", "-3"], "reparam_width must be a positive integer"),
        (["--rounds", "0"], "rounds must be a positive integer"),
        (["--lr", "-1"], "lr must be > 0"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--beta", "-1"], "beta must be >= 0"),
        (["--conv-channels", "65"], "conv_channels must be an integer from 0 to 64"),
        (["--device", "bogus"], "bogus"),
        (["--data-dir", "{tmp}/missing"], "does not exist"),
        (["--data-dir", "{tmp}"], "no mnist IDX files"),
        (["--out", "{tmp}/a-file"], "cannot write to --out"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args: list[str], expected: str, mnist_data_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(mnist_data_dir))
    (tmp_path / "a-file").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    status = main([*args, "--out", str(tmp_path / "out")] if "--out" not in args else args)
    assert status == 2
    assert expected in _one_error_line(capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, expected",
    [(["--data-dir", "{tmp}/missing"], "does not exist"),
     (["--latent-width", "abc"], "invalid int value: 'abc'"),
     (["--dataset", "cifar"], "unknown dataset 'cifar'")],
)
def test_bad_input_in_a_real_process(args: list[str], expected: str, mnist_data_dir: Path, tmp_path: Path) -> None:
    result = _run([a.replace("{tmp}", str(tmp_path)) for a in args], mnist_data_dir, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr.strip().splitlines()[-1]  # argparse puts its usage line first
    assert not (tmp_path / "runs").exists()
