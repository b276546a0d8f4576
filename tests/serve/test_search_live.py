"""The app beside a real running search: `python -m serve.app --experiment <folder of a search that runs>`,
driven by gradio_client. /search_progress grows while trials run (best-so-far never increases), the served
model follows each new best, and once the search has ended the same views show the finished experiment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image
from search_harness import RunningSearch, running_search
from serve_harness import Server, running_app

pytestmark = pytest.mark.slow

TRIALS, ROUNDS = 3, 6
POLL_S = 0.5


def read(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSearch, Server]]:
    tmp = tmp_path_factory.mktemp("live")
    with running_search(tmp / "search", TRIALS, ROUNDS) as search:
        # The app is started with the search: it waits (bounded) for the first trial checkpoint.
        with running_app(["--experiment", str(search.experiment), "--wait", "240"], tmp / "app") as server:
            yield search, server


def drawn(rows: list[list]) -> list[list]:
    """The plot rows that are drawn: the app adds empty (null) rows to fix a plot's colour categories."""
    return [row for row in rows if not any(v is None or (isinstance(v, float) and v != v) for v in row)]


def progress(client: Client) -> dict:
    status, board, by_rounds, by_time, curves, space, pareto, importance = client.predict(
        "latent_width", api_name="/search_progress")
    return {"status": status, "board": board, "best": [row[1] for row in by_rounds["data"]],
            "best_by_time": [row[1] for row in by_time["data"]], "curves": drawn(curves["data"]),
            "pareto": drawn(pareto["data"])}


def test_search_progress_and_the_served_model_follow_a_running_search(live, tmp_path: Path) -> None:
    search, server = live
    client = Client(server.url, verbose=False, download_files=str(tmp_path))
    polls, served = [], []
    while search.process.poll() is None:
        polls.append(progress(client))
        info, _board, line = client.predict(api_name="/model_info")
        served.append((info["serving"], info["metrics"].get("val_neg_elbo"), info["following"], line))
        time.sleep(POLL_S)
    assert search.process.returncode == 0, search.output()[-3000:]
    running = [p for p in polls if "running" in p["status"]]
    assert len(running) >= 3, (len(polls), search.output()[-2000:])
    reports = [len(p["best"]) for p in running]
    assert reports == sorted(reports) and reports[-1] > reports[0]  # rows grow while trials run
    rows = [len(p["board"]["data"]) for p in running]
    assert rows == sorted(rows) and 1 <= rows[0] and rows[-1] <= TRIALS
    for poll in running:
        assert poll["best"] == sorted(poll["best"], reverse=True)  # best so far never increases...
        assert poll["best_by_time"] == poll["best"]
    assert [p["best"][-1] for p in running] == sorted((p["best"][-1] for p in running), reverse=True)  # ...over time
    # The served model followed the search: several checkpoints, each better than the one before.
    following = [s for s in served if s[2]]
    labels = list(dict.fromkeys(s[0] for s in following))
    assert len(labels) >= 2, served
    assert all(label.startswith("trial ") and ", round " in label for label in labels)
    values = [next(s[1] for s in following if s[0] == label) for label in labels]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    assert "Following the running search" in following[0][3]
    # Generate works on a trial checkpoint (it carries its examples bank and class Gaussians).
    for mode in ("class_gaussian", "examples"):
        examples, samples = client.predict(3, 8, 1.0, 5, 1, mode, api_name="/generate")
        assert read(samples).shape == (32, 242)


def test_the_finished_experiment(live, tmp_path: Path) -> None:
    search, server = live
    assert search.wait() == 0
    client = Client(server.url, verbose=False, download_files=str(tmp_path))
    deadline = time.monotonic() + 60
    while "ended and exported" not in (final := progress(client))["status"]:
        assert time.monotonic() < deadline, final["status"]
        time.sleep(POLL_S)
    board = final["board"]
    assert len(board["data"]) == TRIALS and {r[board["headers"].index("status")] for r in board["data"]} == {
        "FINISHED"}
    assert len(final["best"]) == TRIALS * ROUNDS and final["best"] == sorted(final["best"], reverse=True)
    best_column = board["headers"].index("best_val_neg_elbo")
    assert final["best"][-1] == pytest.approx(min(r[best_column] for r in board["data"]), abs=1e-3)
    assert len(final["curves"]) == TRIALS * ROUNDS and len(final["pareto"]) == TRIALS
    info, _board, _line = client.predict(api_name="/model_info")
    assert info["serving"] == "best" and not info["following"]  # the follower moved to the export

    # A fresh app on the finished experiment shows the same, and serves best/ with both modes.
    with running_app(["--experiment", str(search.experiment)], tmp_path / "after") as after:
        fresh = Client(after.url, verbose=False, download_files=str(tmp_path / "fresh"))
        again = progress(fresh)
        assert again["best"] == final["best"] and again["board"]["data"] == board["data"]
        info, _board, line = fresh.predict(api_name="/model_info")
        assert info["serving"] == "best" and not info["following"] and "Following" not in line
        first = fresh.predict(7, 16, 1.0, 3, 1, "class_gaussian", api_name="/generate")
        second = fresh.predict(7, 16, 1.0, 3, 1, "class_gaussian", api_name="/generate")
        assert np.array_equal(read(first[1]), read(second[1])) and read(first[1]).shape == (62, 242)
        with pytest.raises(AppError, match="not in the list of choices"):
            fresh.predict(7, 16, 1.0, 3, 1, "gaussian", api_name="/generate")
