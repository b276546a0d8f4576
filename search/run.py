"""Command line: ``python -m search.run --trials 20`` searches latent width, reparam width, depth, learning
rate and its schedule, KL warm-up (and batch size) with Ray Tune + Optuna TPE + ASHA, then exports the best
model.

This module only parses and validates the arguments (one line and exit status 2 for a mistake) and
calls ``search.tuner.run_search``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

from search.config import DEFAULT_TRIALS, SEARCHERS, SMOKE_TEST, WANDB_MODES, ConfigError, SearchConfig, is_uri
from search.layout import DEFAULT_STORAGE
from search.space import SearchSpace, SpaceError
from search.tracking import default_wandb_mode
from vae.data import DATA_DIR_ENV, DATASETS

DEFAULTS = SearchConfig()
APP_WAIT_S = 1800  # --serve: how long the app waits for the search's first trial checkpoint


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2 (argparse would print the whole usage first)."""
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m search.run",
        description="Search VAE hyperparameters with Ray Tune: Optuna TPE (first evaluating two known "
        "baselines: the article's best 512/64 at lr 3e-4 and pytorch/examples' VAE 400/20 at lr 1e-3) under "
        "a concurrency limit, ASHA early stopping on the validation neg-ELBO, "
        "W&B tracking, then export <storage>/<name>/best/ (best model, leaderboard, Pareto front, plots).",
    )
    run = p.add_argument_group("search")
    run.add_argument("--trials", type=int, default=None,
                     help=f"trials in total (default {DEFAULT_TRIALS}; with --resume: the experiment's own number, "
                     "a larger value extends it)")
    run.add_argument("--max-epochs", type=int, default=None,
                     help=f"most epochs per trial; ASHA stops poor trials earlier (default {DEFAULTS.max_epochs})")
    run.add_argument("--grace-period", type=int, default=None,
                     help=f"epochs every trial runs before ASHA may stop it (default {DEFAULTS.grace_period})")
    run.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                     help=f"stop the search after this many seconds (Tune's time_budget_s) and export what it found; "
                     f"0: no limit (default {DEFAULTS.time_budget_s:g})")
    run.add_argument("--max-concurrent", type=int, default=None,
                     help=f"trials running at once (default {DEFAULTS.max_concurrent}; also bounded by resources)")
    run.add_argument("--searcher", choices=SEARCHERS, default="tpe",
                     help="tpe: Optuna TPE; random: Optuna random sampling of the same space; grid: the article's "
                     "five (latent, reparam) pairs at lr 3e-4, one trial each (--trials is ignored); default tpe")
    run.add_argument("--no-warm-start", action="store_true",
                     help="do not evaluate the known baselines first: the article's best (512, 64, lr 3e-4) and "
                     "pytorch/examples' VAE (400, 20, lr 1e-3), each at batch 128")
    run.add_argument("--no-early-stopping", action="store_true", help="turn ASHA off: every trial runs --max-epochs")
    run.add_argument("--seed", type=int, default=0,
                     help="seed of the sampler, the data split and the trials (default 0)")
    run.add_argument("--smoke-test", action="store_true",
                     help="a quick check (about a minute on 2 CPU cores): "
                     + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in SMOKE_TEST.items())
                     + " unless given explicitly")

    space = p.add_argument_group("search space (printed at start; bounds are inclusive, sampled on a log scale)")
    space.add_argument("--space", metavar="FILE", default=None,
                       help="YAML or JSON file, e.g. {latent_width: [16, 512], lr: [1e-4, 1e-2], batch_size: [128]}")
    space.add_argument("--latent-width", nargs=2, type=int, metavar=("LOW", "HIGH"),
                       help=f"hidden layer width range (default {DEFAULTS.space.latent_width[0]} "
                       f"{DEFAULTS.space.latent_width[1]})")
    space.add_argument("--reparam-width", nargs=2, type=int, metavar=("LOW", "HIGH"),
                       help=f"code z dimension range, never above the latent width (default "
                       f"{DEFAULTS.space.reparam_width[0]} {DEFAULTS.space.reparam_width[1]})")
    space.add_argument("--depth", nargs=2, type=int, metavar=("LOW", "HIGH"),
                       help=f"hidden layers per side of the bottleneck (default {DEFAULTS.space.depth[0]} "
                       f"{DEFAULTS.space.depth[1]}; 1 1: the article's one-layer LinearVAE)")
    space.add_argument("--kl-warmup-epochs", nargs=2, type=int, metavar=("LOW", "HIGH"),
                       help=f"KL warm-up length range in epochs, sampled uniformly (default "
                       f"{DEFAULTS.space.kl_warmup_epochs[0]} {DEFAULTS.space.kl_warmup_epochs[1]}; 0 0: none)")
    space.add_argument("--lr-schedules", nargs="+", metavar="S",
                       help=f"learning-rate schedules to choose from (default {' '.join(DEFAULTS.space.lr_schedule)})")
    space.add_argument("--lr", nargs=2, type=float, metavar=("LOW", "HIGH"),
                       help=f"Adam learning rate range (default {DEFAULTS.space.lr[0]:g} {DEFAULTS.space.lr[1]:g})")
    space.add_argument("--batch-sizes", nargs="+", type=int, metavar="B",
                       help=f"batch sizes to choose from (default {' '.join(map(str, DEFAULTS.space.batch_size))})")

    res = p.add_argument_group("resources and cluster")
    res.add_argument("--cpus-per-trial", type=int, default=None,
                     help=f"CPU cores (and torch threads) per trial (default {DEFAULTS.cpus_per_trial})")
    res.add_argument("--gpus-per-trial", type=float, default=0.0,
                     help="GPUs per trial (default 0); a fraction such as 0.25 lets several small trials share one GPU")
    res.add_argument("--address", default=None,
                     help="join a running Ray cluster ('auto' or host:port); default: start a local Ray")
    res.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all cores)")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="mnist", help=f"one of: {', '.join(DATASETS)} (default mnist)")
    data.add_argument("--data-dir", default=None,
                      help=f"folder with the IDX *-ubyte[.gz] files (default: ${DATA_DIR_ENV}, else torchvision "
                      "downloads); it must exist at the same path on every node")

    out = p.add_argument_group("results")
    out.add_argument("--storage", default=str(DEFAULT_STORAGE),
                     help=f"where experiments live: a local folder or a URI such as s3://bucket/path "
                     f"(default {DEFAULT_STORAGE}/)")
    out.add_argument("--name", default=None,
                     help="experiment name (default vae-<dataset>-<date>-<time>; with --resume: the latest one)")
    out.add_argument("--resume", action="store_true",
                     help="continue an interrupted experiment (Ctrl+C or killed) from its storage, or extend a "
                     "finished one with a larger --trials")
    out.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                     help="Tune's console output: 0 silent, 1 progress table (default), 2 every result")

    track = p.add_argument_group("tracking")
    track.add_argument("--wandb-project", default=DEFAULTS.wandb_project,
                       help=f"W&B project (default {DEFAULTS.wandb_project})")
    track.add_argument("--wandb-mode", choices=WANDB_MODES, default=None,
                       help="W&B mode (default: online when a W&B API key is configured, else offline; "
                       "upload offline runs later with 'wandb sync')")
    web = p.add_argument_group("web app")
    web.add_argument("--serve", action="store_true",
                     help="also start the web app (python -m serve.app) on 127.0.0.1 beside the search: from the first "
                     "trial checkpoint on it serves the best model so far, follows each new best and shows the Search "
                     "view; after the search it serves best/ until Ctrl+C (local --storage only)")
    web.add_argument("--serve-port", type=int, default=7860, help="the web app's port with --serve (default 7860)")
    return p


def _start_app(experiment: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "serve.app", "--experiment", str(experiment), "--wait", str(APP_WAIT_S),
               "--port", str(port)]
    print(f"web app: http://127.0.0.1:{port}/ serves the best model so far from the first trial checkpoint on",
          flush=True)
    return subprocess.Popen(command)


def _stop_app(app: subprocess.Popen | None) -> None:
    if app is not None and app.poll() is None:
        app.terminate()
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(timeout=15)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """Validate the arguments into a SearchConfig (raises ConfigError / SpaceError with one line)."""
    space = SearchSpace()
    if args.space:
        space = SearchSpace.from_file(args.space, space)
    overrides = {k: v for k, v in {"latent_width": args.latent_width, "reparam_width": args.reparam_width,
                                   "lr": args.lr, "batch_size": args.batch_sizes, "depth": args.depth,
                                   "kl_warmup_epochs": args.kl_warmup_epochs,
                                   "lr_schedule": args.lr_schedules}.items() if v is not None}
    space = SearchSpace.from_mapping(overrides, space)

    options: dict[str, Any] = dict(SMOKE_TEST) if args.smoke_test else {}
    explicit = {"trials": args.trials, "max_epochs": args.max_epochs, "grace_period": args.grace_period,
                "max_concurrent": args.max_concurrent, "cpus_per_trial": args.cpus_per_trial}
    options.update({k: v for k, v in explicit.items() if v is not None})
    if args.time_budget is not None:
        options["time_budget_s"] = args.time_budget if args.time_budget != 0 else None
    if args.trials is None and args.resume:
        options.pop("trials", None)  # keep the experiment's own number
    if "max_epochs" in options and "grace_period" not in options:
        options["grace_period"] = min(DEFAULTS.grace_period, options["max_epochs"])
    data_dir = args.data_dir
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().absolute())
    storage = args.storage if is_uri(args.storage) else str(Path(args.storage).expanduser().absolute())
    if not is_uri(storage):
        _check_storage(Path(storage))
    return SearchConfig(
        **options,
        gpus_per_trial=args.gpus_per_trial, dataset=args.dataset, data_dir=data_dir, address=args.address,
        num_cpus=args.num_cpus, storage=storage, name=args.name, resume=args.resume, seed=args.seed,
        wandb_project=args.wandb_project, wandb_mode=args.wandb_mode or default_wandb_mode(), space=space,
        searcher=args.searcher, early_stopping=not args.no_early_stopping, warm_start=not args.no_warm_start,
        verbose=args.verbose,
    )


def _check_storage(path: Path) -> None:
    """--storage must be a folder or a path where one can be created (no file on the way)."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"lies under the file {folder}"
                raise ConfigError(f"--storage {path} {what}: give a folder for the experiments")
            return


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ConfigError, SpaceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.resume:
        ignored = [flag for flag, value in (
            ("--max-epochs", args.max_epochs), ("--grace-period", args.grace_period),
            ("--max-concurrent", args.max_concurrent), ("--cpus-per-trial", args.cpus_per_trial),
            ("--space", args.space), ("--latent-width", args.latent_width), ("--reparam-width", args.reparam_width),
            ("--lr", args.lr), ("--batch-sizes", args.batch_sizes), ("--depth", args.depth),
            ("--kl-warmup-epochs", args.kl_warmup_epochs), ("--lr-schedules", args.lr_schedules),
            ("--time-budget", args.time_budget)) if value is not None]
        if ignored:
            print(f"note: a resumed experiment keeps its own settings; ignoring {', '.join(ignored)}", file=sys.stderr)
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        print(f"error: --data-dir {config.data_dir} does not exist", file=sys.stderr)
        return 2
    if args.serve and (config.storage_is_uri or not 1 <= args.serve_port <= 65535):
        print("error: --serve needs a local --storage" if config.storage_is_uri else
              f"error: --serve-port is out of range: {args.serve_port}", file=sys.stderr)
        return 2
    from search.tuner import SearchError, SearchInterrupted, default_name, latest_restorable, run_search

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
        _stop_app(app)


if __name__ == "__main__":
    sys.exit(main())
