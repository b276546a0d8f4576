"""search/library_internals.py on the installed Ray and Optuna: every private field it relies on is
still there and means what it meant. A failure here names the field; fix the adapter (or pin the
library) before anything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from search import library_internals
from search.config import SearchConfig
from search.library_internals import LibraryInternalsError, base_searcher, optuna_study, resolve_ray_address
from search.tuner import TrialBudget, build_searcher

REPO = Path(__file__).resolve().parents[2]


def test_optuna_study_is_the_searchers_live_study(tmp_path: Path) -> None:
    search_alg = TrialBudget(build_searcher(SearchConfig(storage=str(tmp_path)), "exp"))
    assert isinstance(base_searcher(search_alg), OptunaSearch)
    study = optuna_study(search_alg)
    assert isinstance(study, optuna.Study), f"OptunaSearch.{library_internals.OPTUNA_SEARCH_STUDY} is not a Study"
    # It is the study the searcher asks: a suggestion shows up in it as a running trial.
    config = search_alg.searcher.suggest("trial-0")
    assert config is not None
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1
    assert running[0].params.items() <= config.items()


def test_optuna_study_is_none_for_other_searchers() -> None:
    class Plain:
        pass

    assert optuna_study(Plain()) is None


def test_a_missing_study_field_fails_naming_it(tmp_path: Path) -> None:
    searcher = base_searcher(build_searcher(SearchConfig(storage=str(tmp_path)), "exp"))
    del searcher.__dict__[library_internals.OPTUNA_SEARCH_STUDY]
    with pytest.raises(LibraryInternalsError, match=library_internals.OPTUNA_SEARCH_STUDY):
        optuna_study(searcher)


def test_resolve_ray_address_keeps_host_port() -> None:
    assert resolve_ray_address("192.0.2.7:6379") == "192.0.2.7:6379"  # parsed only, never contacted


def test_resolve_ray_address_auto_without_a_cluster_is_a_connection_error(tmp_path: Path) -> None:
    # In a fresh process with an empty Ray temp dir and no RAY_ADDRESS: nothing to find.
    code = (
        "import sys\n"
        "from search.library_internals import resolve_ray_address\n"
        "try:\n"
        "    resolve_ray_address('auto')\n"
        "except ConnectionError:\n"
        "    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "RAY_TMPDIR": str(tmp_path), "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ray_address_helper_is_still_where_it_was() -> None:
    import importlib

    services = importlib.import_module(library_internals.RAY_SERVICES_MODULE)
    assert callable(getattr(services, library_internals.RAY_CANONICALIZE_ADDRESS, None)), (
        f"{library_internals.RAY_SERVICES_MODULE}.{library_internals.RAY_CANONICALIZE_ADDRESS} is gone"
    )
