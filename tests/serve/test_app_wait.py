"""`python -m serve.app --experiment` on a search without a checkpoint yet: refused with one line at once, or
waited for with --wait (bounded)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fake_search import FakeSearch

from serve import app


def test_a_search_without_a_checkpoint_is_refused_with_one_line(tmp_path: Path, capsys) -> None:
    search = FakeSearch(tmp_path / "exp")
    search.trial("aaa", latent_width=64, reparam_width=8, lr=1e-3)
    assert app.main(["--experiment", str(search.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the search at ") and "has no trial checkpoint yet" in err
    assert err.endswith("pass --wait SECONDS to wait for it") and "\n" not in err


def test_wait_gives_up_after_its_time_with_one_line(tmp_path: Path, capsys) -> None:
    search = FakeSearch(tmp_path / "exp")
    assert app.main(["--experiment", str(search.root), "--wait", "1.5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("waiting up to 1.5 s for the first trial checkpoint")
    assert len(lines) == 2 and lines[1].startswith("error: ") and lines[1].endswith("waited 1.5 s")


def test_wait_picks_up_a_search_that_starts_later(tmp_path: Path, trained_checkpoint: Path, mnist_data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder does not exist yet when the app starts; the search makes it and saves a checkpoint."""
    folder = tmp_path / "exp"
    served = []
    monkeypatch.setattr(app, "build_app", lambda service: served.append(service) or pytest.fail("stop here"))

    def start_search() -> None:
        search = FakeSearch(folder)
        search.trial("aaa", latent_width=128, reparam_width=16, lr=1e-3)
        search.report("aaa", 1, 150.0, checkpoint_from=trained_checkpoint)

    timer = threading.Timer(2.0, start_search)
    timer.start()
    with pytest.raises(pytest.fail.Exception, match="stop here"):
        app.main(["--experiment", str(folder), "--wait", "60"])
    timer.join()
    assert served[0].model_info()["serving"] == "trial aaa, round 1" and served[0].follow
