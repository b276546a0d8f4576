"""SearchConfig: every option of a search as one typed, frozen value, validated once (at the CLI edge
or by a Python caller such as a benchmark) and then passed down unchanged. Its errors name its fields
(``max_epochs must be a positive integer``); the CLI rewrites them with its flags."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from search.layout import DEFAULT_STORAGE
from search.space import ARTICLE_GRID, SearchSpace, SpaceError
from search.tracking import default_wandb_mode
from vae.config import INPUT_DIM, MAX_SIDE, MIN_SIDE
from vae.data import DATA_DIR_ENV, DATASETS
from vae.options import option, python_only, resume_overrides, smoke_values
from vae.own_data import is_own_data

Searcher = Literal["tpe", "random", "grid"]
WandbMode = Literal["online", "offline", "disabled"]
SEARCHERS: tuple[str, ...] = get_args(Searcher)
WANDB_MODES: tuple[str, ...] = get_args(WandbMode)
DEFAULT_TRIALS = 20
# Safety net for the default search (seconds of Tune's own time budget, TuneConfig.time_budget_s): with the
# start (Ray, data) and the export (test split, IWAE, plots) the default search ends within 10 minutes on
# 2 CPU cores even when the sampler draws many large models. Trials still running at the budget are stopped
# and the search exports what it has.
DEFAULT_TIME_BUDGET_S = 450.0
# The export's IWAE bound costs k decoder passes per test image, so it runs on as many test images as fit in a
# share of the search's time (at least 100 images), and says how precise that mean is.
IWAE_SHARE = 0.05
DEFAULT_IWAE_S = 30.0
# A round is this many 28x28 images, and as many pixels of images of other sizes (round_images_for).
BASE_ROUND_IMAGES = 8000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# The sections of the CLI's help, in the order their first field appears.
SEARCH = "search"
SPACE = "search space (printed at start; bounds are inclusive, sampled on a log scale)"
RESOURCES = "resources and cluster"
DATA = "data"
RESULTS = "results"
TRACKING = "tracking"


class ConfigError(ValueError):
    """An invalid option; the message is one line meant for the user, naming the fields it is about
    (``fields``), which ``renamed`` rewrites (the CLI: as its flags)."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields

    def renamed(self, names: Mapping[str, str]) -> str:
        """The message with the first mention of each of its fields (outside a quoted value) as ``names``
        calls it; fields ``names`` lacks keep their name."""
        message = str(self)
        for name in self.fields:
            if name not in names:
                continue
            for match in re.finditer(rf"'[^']*'|\b({re.escape(name)})\b", message):
                if match.group(1):
                    message = message[:match.start(1)] + names[name] + message[match.end(1):]
                    break
        return message


def is_uri(path: str) -> bool:
    return "://" in str(path)


# Command-line values -> field values (vae.options' Option.parse).

def _zero_is_none(seconds: float) -> float | None:
    return None if seconds == 0 else seconds


def _absolute_path(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def _dataset(name: str) -> str:
    """A built-in data set's name (or an unknown name, refused with the others) as given; the path of a user's
    images made absolute."""
    return _absolute_path(name) if name not in DATASETS and is_own_data(name) else name


def _storage_folder(storage: str) -> str:
    """A URI as given; a local path made absolute, which must be a folder or where one can be created."""
    if is_uri(storage):
        return storage
    path = Path(_absolute_path(storage))
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"lies under the file {folder}"
                raise ConfigError(f"storage {str(path)!r} {what}: give a folder for the experiments", "storage")
            break
    return str(path)


@dataclass(frozen=True)
class SearchConfig:
    """All options of one search. Paths are absolute (or a URI for ``storage``) once validated.

    Each field declares its command-line option (vae.options): ``python -m search.run`` is derived
    from these fields, so a new option is one field here."""

    trials: int | None = option(None, group=SEARCH, help="trials in total", resume=True, smoke=4,
                                shown_default=f"{DEFAULT_TRIALS}; with --resume: the experiment's own number, "
                                "a larger value extends it")
    max_rounds: int = option(
        300, group=SEARCH, smoke=2,
        help="most rounds a trial trains (ASHA's max_t); a round is --round-images training images. ASHA stops poor "
        "trials earlier, and with a time budget a trial's learning rate anneals to end by the deadline")
    grace_period: int = option(10, group=SEARCH, smoke=1,
                               help="rounds every trial trains before ASHA may stop it; ASHA's rungs are at "
                               "grace_period x reduction_factor**k rounds (10, 30, 90, 270)")
    reduction_factor: int = python_only(3, help="ASHA: keep the top 1/reduction_factor at each rung", smoke=2)
    time_budget_s: float | None = option(  # None: no limit (0 on the command line)
        DEFAULT_TIME_BUDGET_S, group=SEARCH, flag="--time-budget", metavar="SECONDS", parse=_zero_is_none,
        resume=True,
        help="train for at most this many seconds, then export what the search found: trials anneal their learning "
        "rate to end by then; 0: no limit; with --resume, counted from the resume")
    max_concurrent: int = option(4, group=SEARCH, help="trials running at once; also bounded by resources", smoke=2)
    searcher: Searcher = option(
        "tpe", group=SEARCH,
        help="tpe: Optuna TPE; random: Optuna random sampling of the same space; grid: the article's five "
        "(latent, reparam) pairs at lr 3e-4, one trial each (--trials is ignored)")
    warm_start: bool = option(
        True, group=SEARCH,
        help="do not evaluate the known points first (those inside the space; tpe and random): a "
        "convolutional recipe (256, 32, 16-channel stem, lr 1e-3 with cosine decay, batch 64), the article's "
        "best (512, 64, lr 3e-4) and pytorch/examples' VAE (400, 20, lr 1e-3), the last two at batch 128")
    early_stopping: bool = option(True, group=SEARCH, help="turn ASHA off: every trial runs --max-epochs")
    seed: int = option(0, group=SEARCH, help="seed of the sampler, the data split and the trials")
    grid: tuple[dict[str, Any], ...] = python_only(ARTICLE_GRID, help="the points of the grid searcher")
    space: SearchSpace = option(
        default_factory=SearchSpace, group=SPACE, metavar="FILE", parse=SearchSpace.from_file,
        help="YAML or JSON file, e.g. {latent_width: [16, 512], lr: [1e-4, 1e-2], batch_size: [128]}; "
        "the options below override it", shown_default="none: the ranges below")

    cpus_per_trial: int = option(1, group=RESOURCES, help="CPU cores (and torch threads) per trial", smoke=1)
    gpus_per_trial: float = option(
        0.0, group=RESOURCES, help="GPUs per trial; a fraction such as 0.25 lets several small trials share one GPU")
    address: str | None = option(None, group=RESOURCES, resume=True,
                                 help="join a running Ray cluster ('auto' or host:port)",
                                 shown_default="none: start a local Ray")
    num_cpus: int | None = option(None, group=RESOURCES, resume=True,
                                  help="CPUs of the local Ray; ignored with --address", shown_default="all cores")
    # Off for a trainable that leaks memory or state between trials, or for trials that should spread over a
    # cluster's nodes: with reuse, a short trial's finished actor can take the next trial before a new actor
    # on another node has started (Tune then drops the actor it had asked for).
    reuse_actors: bool = option(True, group=RESOURCES,
                                help="start a new actor for every trial (TuneConfig.reuse_actors=False) instead of "
                                "running it in a finished trial's")

    dataset: str = option("mnist", group=DATA, parse=_dataset,
                          help=f"{' or '.join(DATASETS)}, or the path of your own images: a folder with one "
                          "sub-folder per class (ImageFolder layout) or of unlabelled images, or an .npz with "
                          "'images' (uint8 [N, H, W] or [N, H, W, C]) and optional 'labels' and 'class_names'")
    image_size: int | None = option(None, group=DATA, metavar="S", shown_default="the images' own size",
                                    help=f"resize your own images to S x S, S from {MIN_SIDE} to {MAX_SIDE} (needed "
                                    "when they differ in size)")
    round_images: int | None = option(
        None, group=DATA, metavar="N", shown_default=f"{BASE_ROUND_IMAGES} images of 28x28 pixels, and as many pixels "
        "for other sizes",
        help="training images per round: a trial is validated and reports after each round, so that budgets mean "
        "the same work on any data set size (8000: one epoch of the offline MNIST split, 0.15 of Fashion-MNIST's "
        "54,000)")
    val_images: int = python_only(2000, help="validation images a trial is judged on after each round (the first "
                                  "of the validation split; all of them when there are fewer)")
    data_dir: str | None = option(
        None, group=DATA, parse=_absolute_path,
        help="folder with the IDX *-ubyte[.gz] files; it must exist at the same path on every node",
        shown_default=f"${DATA_DIR_ENV}, else torchvision downloads")

    storage: str = option(str(DEFAULT_STORAGE.absolute()), group=RESULTS, resume=True,
                          help="where experiments live: a local folder or a URI such as s3://bucket/path",
                          shown_default=f"{DEFAULT_STORAGE}/", cli_default=lambda: str(DEFAULT_STORAGE),
                          parse=_storage_folder)
    name: str | None = option(None, group=RESULTS, resume=True, help="experiment name",
                              shown_default="vae-<dataset>-<date>-<time>; with --resume: the latest one")
    resume: bool = option(False, group=RESULTS, resume=True,
                          help="continue an interrupted experiment (Ctrl+C or killed) from its storage, or extend a "
                          "finished one with a larger --trials")
    verbose: Literal[0, 1, 2] = option(1, group=RESULTS, resume=True,
                                       help="Tune's console output: 0 silent, 1 progress table, 2 every result")

    wandb_project: str = option("vaesearch", group=TRACKING, help="W&B project")
    wandb_mode: WandbMode = option("offline", group=TRACKING, cli_default=default_wandb_mode,
                                   help="W&B mode; upload offline runs later with 'wandb sync'",
                                   shown_default="online when a W&B API key is configured, else offline")

    max_failures: int = python_only(2, help="retries of a failed trial (from its last checkpoint), FailureConfig")
    # Two, not one: Tune deletes a trial's older checkpoint when it registers a new one but records that in
    # the experiment state a moment later; a driver killed in between left a state naming a deleted
    # checkpoint, and --resume failed that trial ("does not exist on storage anymore").
    keep_checkpoints: int = python_only(2, help="per trial, the best by val_neg_elbo (CheckpointConfig.num_to_keep)")
    checkpoint_every: int | None = python_only(
        None, help="rounds between writes of a trial's best round (None: grace_period); it is also written at each "
        "rung and at the trial's last round")
    iwae_k: int = option(200, group=RESULTS, resume=True, metavar="K",
                         help="importance samples per test image of the best model's IWAE bound, reported with its "
                         "standard error over the test images that fit in --iwae-seconds (k decoder passes each)")
    iwae_seconds: float | None = option(
        None, group=RESULTS, resume=True, metavar="SECONDS",
        help="the most the export's IWAE bound may take; it is averaged over as many test images as fit",
        shown_default=f"{IWAE_SHARE:.0%} of the time budget, {DEFAULT_IWAE_S:g} s without one")

    def __post_init__(self) -> None:
        def need(ok: bool, message: str, *names: str) -> None:
            if not ok:
                raise ConfigError(message, *names)

        def positive_int(name: str) -> None:
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a positive integer, got {value!r}", name)

        for name in ("max_rounds", "grace_period", "max_concurrent", "cpus_per_trial", "keep_checkpoints", "iwae_k",
                     "val_images"):
            positive_int(name)
        for name in ("trials", "num_cpus", "checkpoint_every", "round_images"):
            if getattr(self, name) is not None:
                positive_int(name)
        need(self.iwae_seconds is None or (isinstance(self.iwae_seconds, (int, float))
                                           and not isinstance(self.iwae_seconds, bool)
                                           and math.isfinite(self.iwae_seconds) and self.iwae_seconds > 0),
             f"iwae_seconds must be a positive number of seconds, got {self.iwae_seconds!r}", "iwae_seconds")
        need(self.grace_period <= self.max_rounds,
             f"grace_period ({self.grace_period}) must not exceed max_rounds ({self.max_rounds})",
             "grace_period", "max_rounds")
        budget = self.time_budget_s
        need(budget is None or (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                                and math.isfinite(budget) and budget > 0),
             f"time_budget_s must be a positive number of seconds, got {budget!r}", "time_budget_s")
        need(isinstance(self.reduction_factor, int) and self.reduction_factor >= 2,
             f"reduction_factor must be an integer >= 2, got {self.reduction_factor!r}", "reduction_factor")
        gpus = self.gpus_per_trial
        need(isinstance(gpus, (int, float)) and math.isfinite(gpus) and gpus >= 0
             and (gpus <= 1 or float(gpus).is_integer()),
             f"gpus_per_trial must be >= 0, a fraction up to 1 or a whole number, got {gpus!r}", "gpus_per_trial")
        need(self.dataset in DATASETS or is_own_data(self.dataset),
             f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}, or give the path of a folder "
             "of images or an .npz", "dataset")
        need(self.image_size is None or (isinstance(self.image_size, int) and MIN_SIDE <= self.image_size <= MAX_SIDE),
             f"image_size must be from {MIN_SIDE} to {MAX_SIDE}, got {self.image_size!r}", "image_size")
        need(self.data_dir is None or Path(self.data_dir).is_absolute(),
             f"data_dir must be an absolute path, got {self.data_dir!r}", "data_dir")
        need(is_uri(self.storage) or Path(self.storage).is_absolute(),
             f"storage must be an absolute path or a URI, got {self.storage!r}", "storage")
        need(self.name is None or bool(_NAME.match(self.name)),
             f"name {self.name!r} must be letters, digits, '.', '_' or '-' (no slashes)", "name")
        need(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
             f"seed must be an integer >= 0, got {self.seed!r}", "seed")
        need(self.wandb_mode in WANDB_MODES,
             f"wandb_mode must be one of {', '.join(WANDB_MODES)}, got {self.wandb_mode!r}", "wandb_mode")
        need(bool(self.wandb_project), "wandb_project must not be empty", "wandb_project")
        need(self.searcher in SEARCHERS, f"searcher must be one of {', '.join(SEARCHERS)}, got {self.searcher!r}",
             "searcher")
        need(isinstance(self.max_failures, int) and self.max_failures >= 0,
             f"max_failures must be an integer >= 0, got {self.max_failures!r}", "max_failures")
        need(self.verbose in (0, 1, 2), f"verbose must be 0, 1 or 2, got {self.verbose!r}", "verbose")
        need(self.address is None or bool(self.address.strip()), "address must not be empty", "address")
        need(isinstance(self.space, SearchSpace), "space must be a SearchSpace", "space")
        try:
            if self.searcher == "grid":
                need(len(self.grid) > 0, "the grid is empty", "grid")
                for point in self.grid:
                    self.space.check(dict(point))
        except SpaceError as exc:
            raise ConfigError(str(exc)) from exc

    @property
    def num_samples(self) -> int:
        """Trials Tune runs in total for a fresh search: ``trials``, or one per point for the grid."""
        if self.searcher == "grid":
            return len(self.grid)
        return DEFAULT_TRIALS if self.trials is None else self.trials

    @property
    def iwae_budget_s(self) -> float:
        """Seconds the export's IWAE may take (``iwae_seconds``, else a share of the time budget)."""
        if self.iwae_seconds is not None:
            return float(self.iwae_seconds)
        return max(10.0, IWAE_SHARE * self.time_budget_s) if self.time_budget_s else DEFAULT_IWAE_S

    def round_images_for(self, image_shape: tuple[int, int, int]) -> int:
        """Training images per round for images of ``image_shape``: ``round_images``, else BASE_ROUND_IMAGES
        images' worth of 28x28 pixels (a round of 64x64 RGB images is about 500 of them)."""
        if self.round_images is not None:
            return self.round_images
        return max(100, round(BASE_ROUND_IMAGES * INPUT_DIM / (image_shape[0] * image_shape[1] * image_shape[2])))

    @property
    def dataset_label(self) -> str:
        """The data set as an experiment's default name shows it: its name, or its path's last part."""
        return self.dataset if self.dataset in DATASETS else Path(self.dataset).stem or "images"

    @property
    def rungs(self) -> tuple[int, ...]:
        """The rounds where ASHA judges trials (grace_period x reduction_factor**k below max_rounds, by
        the formula Ray's ASHAScheduler uses), where a trial writes its checkpoint; () without ASHA."""
        if not self.early_stopping:
            return ()
        count = int(math.log(self.max_rounds / self.grace_period) / math.log(self.reduction_factor) + 1)
        milestones = (self.grace_period * self.reduction_factor**k for k in range(count))
        return tuple(m for m in milestones if m < self.max_rounds)

    @property
    def warm_start_points(self) -> list[dict[str, Any]]:
        """What random and TPE evaluate before sampling: the known baselines inside the space, or none."""
        return self.space.warm_start_points() if self.warm_start and self.searcher != "grid" else []

    @property
    def storage_is_uri(self) -> bool:
        return is_uri(self.storage)

    def experiment_path(self, name: str) -> str:
        """Where Tune keeps the experiment: a local folder or a URI."""
        return f"{self.storage.rstrip('/')}/{name}" if self.storage_is_uri else str(Path(self.storage) / name)

    def local_experiment_dir(self, name: str) -> Path:
        """A local folder for this experiment: the experiment itself for local storage, else
        ``./results/<name>`` (where best/ is written before it is uploaded, and W&B's files go)."""
        if self.storage_is_uri:
            return DEFAULT_STORAGE.absolute() / name
        return Path(self.storage) / name

    def replace(self, **changes: Any) -> SearchConfig:
        return replace(self, **changes)

    def resumed(self, original: SearchConfig, **changes: Any) -> SearchConfig:
        """What a resumed search runs with: the experiment's own config (``original``) with this run's
        values of the fields --resume may override (RESUME_OVERRIDES), then ``changes``."""
        return original.replace(**{**{name: getattr(self, name) for name in RESUME_OVERRIDES}, **changes})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["space"] = self.space.to_dict()
        data["grid"] = [dict(p) for p in self.grid]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Inverse of ``to_dict`` (what an experiment stores about itself); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["space"] = SearchSpace.from_mapping(values.get("space") or {})
        values["grid"] = tuple(dict(p) for p in values.get("grid", ARTICLE_GRID))
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# What --smoke-test sets (unless a flag is given) and what --resume takes from this run, from the fields.
SMOKE_TEST: dict[str, Any] = smoke_values(SearchConfig)
RESUME_OVERRIDES: tuple[str, ...] = resume_overrides(SearchConfig)
