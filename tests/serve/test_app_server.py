"""The app as users and API clients meet it: `python -m serve.app` on 127.0.0.1, driven by gradio_client."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from serve_harness import REPO, Server, app_env, running_app

from serve import app
from serve.service import VAEService

pytestmark = pytest.mark.slow


def read(path: str) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "L" and image.format == "PNG"  # lossless, so pixel values can be compared
    return np.asarray(image)


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def local(experiment: Path) -> VAEService:
    """The same requests answered in-process, to compare the server's images with."""
    return VAEService.from_experiment(experiment)


def test_endpoints_have_stable_names(client: Client) -> None:
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(named) == {"/generate", "/prior", "/interpolate", "/reconstruct", "/search_progress", "/model_info",
                          "/switch_model"}


def test_generate(client: Client, local: VAEService) -> None:
    examples, samples = client.predict(7, 16, 1.0, 123, 2, api_name="/generate")
    examples, samples = read(examples), read(samples)
    assert examples.shape == (32, 62) and samples.shape == (62, 242)
    expected = local.generate(7, 16, 1.0, 123, 2)
    assert np.array_equal(examples, expected.examples) and np.array_equal(samples, expected.samples)
    again = read(client.predict(7, 16, 1.0, 123, 2, api_name="/generate")[1])
    other = read(client.predict(7, 16, 1.0, 124, 2, api_name="/generate")[1])
    assert np.array_equal(again, samples) and not np.array_equal(other, samples)


def test_prior(client: Client, local: VAEService) -> None:
    grid = read(client.predict(n_samples=5, temperature=0.8, seed=4, api_name="/prior"))
    assert grid.shape == (32, 152)
    assert np.array_equal(grid, local.prior(5, 0.8, 4))
    assert 20 < grid.mean() < 250


def test_interpolate(client: Client, local: VAEService) -> None:
    grid = read(client.predict(1, 3, 7, 0, 6, api_name="/interpolate"))
    assert grid.shape == (32, 242)
    assert np.array_equal(grid, local.interpolate(1, 7, 6, 3, 0))


def test_reconstruct_upload(client: Client, local: VAEService, tmp_path: Path) -> None:
    digit = local.generate(3, 1, 0.0, 0).examples  # a real 28x28 test image of a 3
    Image.fromarray(digit).save(tmp_path / "three.png")
    seen, recon, nats = client.predict(handle_file(tmp_path / "three.png"), None, api_name="/reconstruct")
    assert np.array_equal(read(seen), digit)
    assert read(recon).shape == (28, 28)
    assert nats == pytest.approx(local.reconstruct(tmp_path / "three.png").neg_elbo, abs=0.01)


def test_reconstruct_a_large_photo_of_dark_ink(client: Client, tmp_path: Path) -> None:
    photo = Image.new("RGB", (640, 480), "white")
    photo.paste((10, 10, 10), (300, 100, 340, 400))
    photo.save(tmp_path / "photo.jpg", quality=90)
    seen = read(client.predict(handle_file(tmp_path / "photo.jpg"), None, api_name="/reconstruct")[0])
    assert seen.shape == (28, 28) and seen[0].max() < 30 and seen.max() > 200  # inverted, centred ink


def test_model_info(client: Client) -> None:
    info, board, served = client.predict(api_name="/model_info")
    assert info["trial_id"] == "t_wide" and info["model_config"]["reparam_width"] == 8
    assert [row[2] for row in board["data"]] == ["t_wide", "t_narrow", "t_failed"]
    assert board["data"][0][0] == "best + serving"
    assert "Serving **best**" in served


def test_invalid_inputs_give_errors_and_the_server_keeps_answering(
    client: Client, server: Server, tmp_path: Path, pixelless_png
) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "huge.png").write_bytes(pixelless_png(5000, 5000))
    (tmp_path / "bomb.png").write_bytes(pixelless_png(30000, 30000))
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    bad = [
        ((3, 0, 1.0, 0, 1), "/generate", "minimum"),  # gradio's own slider bounds
        ((3, 65, 1.0, 0, 1), "/generate", "maximum"),
        ((3, 16, -1.0, 0, 1), "/generate", "minimum"),
        ((3, 16, 1.0, -5, 1), "/generate", "minimum"),
        ((11, 16, 1.0, 0, 1), "/generate", "not in the list of choices"),
        ((1, 0, 7, 0, 1), "/interpolate", "minimum"),
        ((1, 0, 7, 40, 5), "/interpolate", "maximum"),
        ((None, None), "/reconstruct", "draw a digit or upload an image"),
        ((handle_file(tmp_path / "blank.png"), None), "/reconstruct", "blank"),
        ((handle_file(tmp_path / "huge.png"), None), "/reconstruct", "too large (at most 16,777,216 pixels)"),
        ((handle_file(tmp_path / "bomb.png"), None), "/reconstruct", "too large (at most 16,777,216 pixels)"),
        ((handle_file(tmp_path / "notes.png"), None), "/reconstruct", "not an image this app reads"),
        (("t_failed",), "/switch_model", "not in the list of choices"),  # no checkpoint to serve
    ]
    for args, api_name, message in bad:
        with pytest.raises(AppError) as info:
            client.predict(*args, api_name=api_name)
            pytest.fail(f"{api_name}{args} was accepted")
        assert message in str(info.value), (api_name, args, str(info.value))
        assert server.process.poll() is None
    assert read(client.predict(2, 4, 1.0, 0, 1, api_name="/generate")[1]).shape == (32, 122)


def test_concurrent_requests_all_succeed(server: Server, local: VAEService, tmp_path: Path) -> None:
    expected = local.generate(9, 16, 1.0, 5, 1).samples
    results, errors = [], []

    def ask() -> None:
        client = Client(server.url, verbose=False, download_files=str(tmp_path))
        try:
            for _ in range(3):
                results.append(read(client.predict(9, 16, 1.0, 5, 1, api_name="/generate")[1]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 18
    assert all(np.array_equal(r, expected) for r in results)


def test_missing_checkpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "serve.app", "--checkpoint", str(tmp_path / "nothing")],
                            cwd=REPO, env=app_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no checkpoint at {tmp_path / 'nothing'} "
                                                  "(expected a folder with model.safetensors and checkpoint.json)"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--experiment", "{tmp}"], {}, "is not an exported experiment"),
        ([], {}, "no exported experiment under results/"),
        (["--checkpoint", "{tmp}"], {}, "is not a checkpoint folder"),
        (["--checkpoint", "{ckpt}"], {"VAESEARCH_AUTH": "user-without-password"}, "must look like user:password"),
        (["--checkpoint", "{ckpt}", "--port", "70000"], {}, "--port is out of range"),
    ],
)
def test_cli_refuses_bad_arguments(argv: list[str], env: dict[str, str], message: str, experiment: Path,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no results/ here
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = [a.format(tmp=tmp_path, ckpt=experiment / "best") for a in argv]
    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "without-password" not in err


def test_switch_model_behind_a_login(experiment: Path, tmp_path: Path) -> None:
    local = VAEService.from_experiment(experiment)
    wide = local.generate(5, 16, 1.0, 42).samples
    local.switch_model("t_narrow")
    narrow = local.generate(5, 16, 1.0, 42).samples
    with running_app(["--experiment", str(experiment)], tmp_path, VAESEARCH_AUTH="tester:s3cret-pw") as server:
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a bare ValueError for a failed login
            Client(server.url, verbose=False, auth=("tester", "wrong"))
        client = Client(server.url, verbose=False, auth=("tester", "s3cret-pw"), download_files=str(tmp_path / "dl"))
        assert np.array_equal(read(client.predict(5, 16, 1.0, 42, 1, api_name="/generate")[1]), wide)

        info, board, served, status = client.predict("t_narrow", api_name="/switch_model")
        assert info["trial_id"] == "t_narrow" and info["serving"] == "trials/t_narrow"
        assert info["model_config"] == {"latent_width": 48, "reparam_width": 4, "depth": 1, "conv_channels": 0,
                                        "channels": 1, "height": 28, "width": 28}
        assert [row[0] for row in board["data"]] == ["best", "serving", ""]
        assert "t_narrow" in status and "trials/t_narrow" in served
        assert np.array_equal(read(client.predict(5, 16, 1.0, 42, 1, api_name="/generate")[1]), narrow)
        assert client.predict(api_name="/model_info")[0]["trial_id"] == "t_narrow"

        with pytest.raises(AppError):
            client.predict("t_nowhere", api_name="/switch_model")
        client.predict("t_wide", api_name="/switch_model")
        assert np.array_equal(read(client.predict(5, 16, 1.0, 42, 1, api_name="/generate")[1]), wide)
        assert "s3cret-pw" not in server.output()
