"""search/library_internals.py on the installed Ray and Optuna: every private field it relies on is
still there and means what it meant. A failure here names the field; fix the adapter (or pin the
library) before anything else."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from search import library_internals
from search.config import SearchConfig
from search.library_internals import LibraryInternalsError, base_searcher, optuna_study, resolve_ray_address
from search.searcher import TrialBudget, build_searcher


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


def test_resolve_ray_address_auto_reads_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # "auto" resolves the way ray.init would: RAY_ADDRESS first (parsed only, never contacted).
    monkeypatch.setenv("RAY_ADDRESS", "192.0.2.7:6380")
    assert resolve_ray_address("auto") == "192.0.2.7:6380"


def test_resolve_ray_address_refuses_a_malformed_address() -> None:
    with pytest.raises(ValueError):
        resolve_ray_address("no-port-here")


def test_ray_address_helper_is_still_where_it_was() -> None:
    import importlib

    services = importlib.import_module(library_internals.RAY_SERVICES_MODULE)
    assert callable(getattr(services, library_internals.RAY_CANONICALIZE_ADDRESS, None)), (
        f"{library_internals.RAY_SERVICES_MODULE}.{library_internals.RAY_CANONICALIZE_ADDRESS} is gone"
    )
