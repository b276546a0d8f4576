"""The one place where vaesearch reaches into another library's private attributes.

Each function here needs something Ray Tune or Optuna has no public API for (checked against the
versions pinned in pyproject.toml). Everything else in ``search/``, ``serve/`` and ``vae/`` uses
public API only. ``tests/search/test_library_internals.py`` exercises every function on the
installed versions and fails naming the field when a release moves or renames it, so an upgrade
breaks loudly in the tests instead of silently in a search.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

OPTUNA_SEARCH_STUDY = "_ot_study"  # OptunaSearch's optuna.Study (Ray 2.60: set in _setup_study, pickled in save)
RAY_SERVICES_MODULE = "ray._private.services"
RAY_CANONICALIZE_ADDRESS = "canonicalize_bootstrap_address"


class LibraryInternalsError(RuntimeError):
    """A private field this module relies on is gone: the installed Ray or Optuna is not a tested version."""


def base_searcher(searcher: Any) -> Any:
    """The innermost searcher under Tune's wrappers (SearchGenerator, ConcurrencyLimiter, ...).

    Public: Tune's own wrappers expose what they wrap as ``.searcher`` and Tune walks them the same way."""
    while hasattr(searcher, "searcher"):
        searcher = searcher.searcher
    return searcher


def optuna_study(searcher: Any) -> optuna.Study | None:
    """The live ``optuna.Study`` of an OptunaSearch (possibly wrapped), or None for another searcher
    or before the study exists (OptunaSearch creates it once it knows the space and mode).

    Why private: OptunaSearch keeps the study it asks and tells in ``_ot_study`` and has no accessor;
    the study is needed to keep a readable SQLite copy of it next to the experiment.
    """
    base = base_searcher(searcher)
    if not isinstance(base, OptunaSearch):
        return None
    if OPTUNA_SEARCH_STUDY not in vars(base):
        raise LibraryInternalsError(
            f"ray.tune.search.optuna.OptunaSearch has no attribute {OPTUNA_SEARCH_STUDY!r} any more: "
            "this Ray version is not one vaesearch was tested with (see pyproject.toml)"
        )
    study = vars(base)[OPTUNA_SEARCH_STUDY]
    if study is not None and not isinstance(study, optuna.Study):
        raise LibraryInternalsError(
            f"OptunaSearch.{OPTUNA_SEARCH_STUDY} is a {type(study).__name__}, not an optuna.Study: "
            "this Ray version is not one vaesearch was tested with"
        )
    return study


def resolve_ray_address(address: str) -> str | None:
    """``"auto"`` or ``host:port`` -> ``host:port`` of the cluster Ray itself would connect to.

    Why private: ``ray.init(address="auto")`` resolves the address the same way but then retries a dead
    cluster for minutes; resolving first lets the CLI fail in seconds with one line. Raises
    ConnectionError when "auto" finds no running cluster, ValueError for a malformed address.
    """
    import importlib

    services = importlib.import_module(RAY_SERVICES_MODULE)
    canonicalize = getattr(services, RAY_CANONICALIZE_ADDRESS, None)
    if canonicalize is None:
        raise LibraryInternalsError(
            f"{RAY_SERVICES_MODULE}.{RAY_CANONICALIZE_ADDRESS} is gone: this Ray version is not one vaesearch "
            "was tested with (see pyproject.toml)"
        )
    return canonicalize(address)
