"""Command line: ``python -m search.run --trials 20`` searches latent width, reparam width, depth, learning
rate and its schedule, KL warm-up (and batch size) with Ray Tune + Optuna TPE + ASHA, then exports the best
model.

This module only parses and validates the arguments (one line and exit status 2 for a mistake) and
calls ``search.tuner.run_search``. Its options are SearchConfig's fields (vae.options derives a flag,
its help and default, and how --resume and --smoke-test treat it from each field), plus --smoke-test
and the web app's --serve and --serve-port.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from search.config import RESUME_OVERRIDES, SMOKE_TEST, ConfigError, SearchConfig
from search.space import SpaceError
from vae.options import Arguments, OneLineParser

APP_WAIT_S = 1800  # --serve: how long the app waits for the search's first trial checkpoint
OPTIONS = Arguments(SearchConfig)  # one option per field of SearchConfig and of its search space
FLAGS = OPTIONS.flags  # field -> flag, for errors


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.run",
        description="Search VAE hyperparameters with Ray Tune: Optuna TPE (first evaluating three known "
        "points: a convolutional recipe, the article's best 512/64 at lr 3e-4 and pytorch/examples' VAE 400/20 "
        "at lr 1e-3) under "
        "a concurrency limit, ASHA early stopping on the validation neg-ELBO, "
        "W&B tracking, then export <storage>/<name>/best/ (best model, leaderboard, Pareto front, plots).",
    )
    groups = OPTIONS.add_to(p)
    preset = ", ".join(f"{FLAGS.get(name, name)} {value}" for name, value in SMOKE_TEST.items())
    groups["search"].add_argument("--smoke-test", action="store_true",
                                  help=f"a quick check (about a minute on 2 CPU cores): {preset}, unless given")
    web = p.add_argument_group("web app")
    web.add_argument("--serve", action="store_true",
                     help="also start the web app (python -m serve.app) on 127.0.0.1 beside the search: from the first "
                     "trial checkpoint on it serves the best model so far, follows each new best and shows the Search "
                     "view; after the search it serves best/ until Ctrl+C (local --storage only)")
    web.add_argument("--serve-port", type=int, default=7860, help="the web app's port with --serve (default 7860)")
    return p


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """Validate the arguments into a SearchConfig (raises ConfigError / SpaceError with one line).

    --smoke-test presets SMOKE_TEST's fields (a flag given wins; with --resume, the fields --resume takes
    from this run keep the experiment's own value), and a --max-rounds below the default grace period
    lowers the grace period with it."""
    presets = dict(SMOKE_TEST) if args.smoke_test else {}
    if args.resume:
        presets = {name: value for name, value in presets.items() if name not in RESUME_OVERRIDES}
    values = OPTIONS.values(args, presets)
    if "max_rounds" in values and "grace_period" not in values:
        grace = next(f.default for f in dataclasses.fields(SearchConfig) if f.name == "grace_period")
        values["grace_period"] = min(grace, values["max_rounds"])
    return SearchConfig(**values)


def resume_ignored(args: argparse.Namespace) -> list[str]:
    """The flags given that a resumed experiment ignores: it keeps its own settings, but for RESUME_OVERRIDES."""
    ignored = [a.flag for a in OPTIONS.given(args) if a.top not in RESUME_OVERRIDES]
    return [*ignored, "--smoke-test"] if args.smoke_test else ignored


def _start_app(experiment: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "serve.app", "--experiment", str(experiment), "--wait", str(APP_WAIT_S),
               "--port", str(port)]
    print(f"web app: http://127.0.0.1:{port}/ serves the best model so far from the first trial checkpoint on",
          flush=True)
    return subprocess.Popen(command)


def stop_process(process: subprocess.Popen | None, timeout_s: float = 15) -> None:
    """End a child process: SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc.renamed(FLAGS)}", file=sys.stderr)
        return 2
    except SpaceError as exc:  # names the space's own parameters, as a --space file does
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.resume:
        ignored = resume_ignored(args)
        if ignored:
            print(f"note: a resumed experiment keeps its own settings; ignoring {', '.join(ignored)}", file=sys.stderr)
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        print(f"error: --data-dir {config.data_dir} does not exist", file=sys.stderr)
        return 2
    if args.serve and (config.storage_is_uri or not 1 <= args.serve_port <= 65535):
        print("error: --serve needs a local --storage" if config.storage_is_uri else
              f"error: --serve-port is out of range: {args.serve_port}", file=sys.stderr)
        return 2
    from search.tuner import NoResults, SearchError, SearchInterrupted, default_name, latest_restorable, run_search

    app = None
    try:
        if args.serve:
            name = config.name or (latest_restorable(config) if config.resume else default_name(config))
            if name is not None:  # (a --resume with nothing to resume fails in run_search, with its message)
                config = config.replace(name=name)
                app = _start_app(config.local_experiment_dir(name), args.serve_port)
        try:
            outcome = run_search(config)
        except SearchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except NoResults as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except SearchInterrupted as exc:
            print(str(exc), file=sys.stderr)
            return 130
        if app is not None and app.poll() is None and outcome.export.best is not None:
            print(f"search ended; the web app serves its best/ on http://127.0.0.1:{args.serve_port}/ until Ctrl+C",
                  flush=True)
            try:
                app.wait()
            except KeyboardInterrupt:
                pass
        return 0 if outcome.export.best is not None else 1
    finally:
        stop_process(app)


if __name__ == "__main__":
    sys.exit(main())
