"""The web app's request handling, free of Gradio: validate inputs, seed, call vae.sample, build grids.

Every method returns plain values (uint8 arrays, numbers, dicts) that serve/app.py hands to its
widgets, and raises InvalidRequest, whose message is meant for the user, for any input it refuses.
The served model is one immutable ServedModel reference: a request reads it once and uses that
snapshot throughout, and switching models swaps the reference under a lock, so concurrent
requests always see one whole model, never a half-switched one.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from search.hyperparams import NAMES
from search.layout import BEST_DIR, LEADERBOARD_JSON
from search.live import read_live
from serve.experiment import Experiment, ExperimentError, load_experiment
from serve.images import ImageInputError, model_input, open_image
from serve.search_view import is_search_folder, read_view
from vae.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from vae.class_gaussians import sample_class
from vae.loss import neg_elbo
from vae.model import reparameterize
from vae.sample import as_images, generate_class, grid_to_uint8, interpolate, reconstruct, sample_prior

MAX_SAMPLES = 64
MAX_SOURCES = 8
MAX_NOISE = 3.0
MAX_TEMPERATURE = 3.0
MIN_STEPS, MAX_STEPS = 2, 32
MAX_SEED = 2**31 - 1
ELBO_SAMPLES = 64  # the Reconstruct view's neg-ELBO averages this many posterior draws (seeded)
GRID_COLUMNS = 8
CLASS_GAUSSIAN, EXAMPLES = "class_gaussian", "examples"
GENERATE_MODES = (CLASS_GAUSSIAN, EXAMPLES)  # /generate's mode argument: an allow-list
DEFAULT_MODE = CLASS_GAUSSIAN  # the better of the two by benchmarks/sample_quality.py, where the checkpoint has it
# The Generate view's default noise scale: class-Gaussian samples at 0.75 are 97% of their class by an independent
# classifier with two thirds of real images' diversity; at 1 the Gaussian's tails reach other classes (92%).
DEFAULT_NOISE_SCALE = 0.75

LEADERBOARD_COLUMNS = ("mark", "rank", "trial_id", "status", "origin", "best_val_neg_elbo", *NAMES, "rounds",
                       "val_active_units", "parameters", "time_s", "node")


class InvalidRequest(ValueError):
    """An input the app refuses; the message says why, for the user."""


class NoCheckpointYet(ExperimentError):
    """A running search has not saved a trial checkpoint yet: nothing to serve so far."""


@dataclass(frozen=True)
class TrialCheckpoint:
    """One checkpoint a running search kept (from its live status): which trial and round, where, how good."""

    trial_id: str
    round: int
    path: Path
    val_neg_elbo: float


@dataclass(frozen=True)
class ServedModel:
    checkpoint: Checkpoint
    label: str  # where it came from, for display: "best", "trials/<id>" or the checkpoint folder's name
    trial_id: str | None = None
    source: TrialCheckpoint | None = None  # set when following a running search: the trial checkpoint served

    @property
    def class_names(self) -> tuple[str, ...]:
        """The data set's class names (empty: it had no labels)."""
        return self.checkpoint.class_names

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)


@dataclass(frozen=True)
class Generated:
    examples: np.ndarray  # grid of the real examples that were encoded, [H, W] or [H, W, 3] uint8
    samples: np.ndarray  # grid of the decoded draws, [H, W] or [H, W, 3] uint8


@dataclass(frozen=True)
class Reconstruction:
    model_input: np.ndarray  # the image as the model sees it, uint8 [H, W] or [H, W, 3]
    reconstruction: np.ndarray  # the decoded posterior mean, the same shape
    neg_elbo: float  # nats, ELBO_SAMPLES-draw estimate
    recon: float
    kl: float


def default_mode(served: ServedModel) -> str:
    """DEFAULT_MODE when the checkpoint has class Gaussians, else "examples" (older checkpoints)."""
    return DEFAULT_MODE if served.checkpoint.class_gaussians is not None else EXAMPLES


def load_served(path: str | Path, label: str, trial_id: str | None = None) -> ServedModel:
    """Load a checkpoint to serve; raises CheckpointError if it is missing or invalid."""
    return ServedModel(load_checkpoint(path, device="cpu"), label, trial_id)


def served_trial(ref: TrialCheckpoint) -> ServedModel:
    """A trial checkpoint as a ServedModel; it carries its examples bank and class Gaussians
    (search.trial_state), so nothing of the data set is needed here."""
    served = load_served(ref.path, f"trial {ref.trial_id}, round {ref.round}", ref.trial_id)
    return ServedModel(served.checkpoint, served.label, ref.trial_id, ref)


class VAEService:
    """Serves one model at a time. ``search`` is the search's experiment folder when there is one (the
    Search view reads it, and while ``follow`` is on ``refresh`` serves each new best checkpoint of a
    running search); ``experiment`` is its export (best/), None until the search has ended."""

    def __init__(self, served: ServedModel, experiment: Experiment | None = None, search: Path | None = None,
                 follow: bool = False) -> None:
        self._served = served
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.experiment = experiment
        self.search = search
        self.follow = follow

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> VAEService:
        return cls(load_served(path, Path(path).name))

    @classmethod
    def from_experiment(cls, path: str | Path) -> VAEService:
        """Serve an exported experiment's best/ checkpoint, or, for a search that is still running (no
        best/ yet), its best trial checkpoint so far, following new bests. Raises ExperimentError
        (NoCheckpointYet when a running search has no checkpoint yet) or CheckpointError."""
        path = Path(path)
        if not (path / BEST_DIR / LEADERBOARD_JSON).is_file() and is_search_folder(path):
            ref = best_trial_checkpoint(path)
            if ref is None:
                raise NoCheckpointYet(f"the search at {path} has no trial checkpoint yet (a trial saves its "
                                      "best round every --grace-period rounds, 10 by default)")
            return cls(served_trial(ref), None, path, follow=True)
        experiment = load_experiment(path)
        search = experiment.best.parent if is_search_folder(experiment.best.parent) else None
        return cls(load_served(experiment.best, "best", experiment.best_trial_id()), experiment, search)

    # ---- following a running search ------------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        self.follow = bool(follow)

    def refresh(self) -> bool:
        """Pick up what the search wrote since the last call: its export once it has ended (then best/
        is served if following), else, while following, a new best checkpoint. Returns whether the
        served model changed. Concurrent calls (one timer per open page) do not queue: one reads,
        the others return at once. A checkpoint that fails to load is left for the next call."""
        if self.search is None or not self._refresh_lock.acquire(blocking=False):
            return False
        try:
            if self.experiment is None and (self.search / BEST_DIR / LEADERBOARD_JSON).is_file():
                try:
                    experiment = load_experiment(self.search)
                    served = load_served(experiment.best, "best", experiment.best_trial_id()) if self.follow else None
                except (ExperimentError, CheckpointError):
                    return False  # being written: next time
                self.experiment = experiment
                if served is not None:
                    with self._lock:
                        self._served = served
                return served is not None
            if not self.follow or self.experiment is not None:
                return False
            ref = best_trial_checkpoint(self.search)
            current = self.served.source
            if ref is None or (current is not None and (ref.path == current.path or
                                                        ref.val_neg_elbo >= current.val_neg_elbo)):
                return False
            try:
                served = served_trial(ref)
            except CheckpointError:
                return False  # deleted by Tune (num_to_keep) or unreadable: next time
            with self._lock:
                self._served = served
            return True
        finally:
            self._refresh_lock.release()

    @property
    def served(self) -> ServedModel:
        with self._lock:
            return self._served

    # ---- views -------------------------------------------------------------------------------

    def generate(self, class_index: Any, n_samples: Any, noise_scale: Any, seed: Any, n_sources: Any = 1,
                 mode: Any = None) -> Generated:
        """Samples of one class. Mode "class_gaussian": codes drawn from the class's Gaussian in the latent
        space (``examples`` is then the decoded class mean, ``n_sources`` unused); mode "examples": codes
        drawn from the posteriors of ``n_sources`` real examples of the class (the article's way). None:
        the served model's default (``default_mode``)."""
        served = self.served
        if not served.labelled:
            raise InvalidRequest("this model's images had no labels, so there is no class to generate: the Prior "
                                 "view samples it")
        mode = default_mode(served) if mode is None else mode
        if mode not in GENERATE_MODES:
            raise InvalidRequest(f"mode must be one of {', '.join(GENERATE_MODES)}, got {mode!r}")
        class_index = _int_in("class", class_index, 0, len(served.class_names) - 1)
        n_samples = _int_in("number of samples", n_samples, 1, MAX_SAMPLES)
        noise_scale = _float_in("noise scale", noise_scale, 0.0, MAX_NOISE)
        n_sources = _int_in("number of real examples", n_sources, 1, MAX_SOURCES)
        generator = _generator(seed)
        if mode == CLASS_GAUSSIAN:
            gaussians = served.checkpoint.class_gaussians
            if gaussians is None:
                raise InvalidRequest("this checkpoint has no class Gaussians (saved before they existed, or a trial "
                                     "checkpoint without the data set at hand): use the mode \"examples\"")
            if class_index >= gaussians.num_classes:
                raise InvalidRequest(f"this model has no Gaussian for class {class_index}")
            model = served.checkpoint.model
            samples = sample_class(model, gaussians, class_index, n_samples, noise_scale=noise_scale,
                                   generator=generator)
            centre = sample_class(model, gaussians, class_index, 1, noise_scale=0.0)
            return Generated(_grid(centre, 1), _grid(samples, min(n_samples, GRID_COLUMNS)))
        examples = _examples(served)
        try:
            out = generate_class(served.checkpoint.model, examples.images, examples.labels, class_index, n_samples,
                                 n_sources=n_sources, noise_scale=noise_scale, generator=generator)
        except ValueError as exc:  # no example of that class in the bank
            raise InvalidRequest(f"this model has {exc}") from exc
        return Generated(_grid(out.sources, len(out.sources)), _grid(out.samples, min(n_samples, GRID_COLUMNS)))

    def prior(self, n_samples: Any, temperature: Any, seed: Any) -> np.ndarray:
        """Decoded draws from N(0, temperature^2 I)."""
        n_samples = _int_in("number of samples", n_samples, 1, MAX_SAMPLES)
        temperature = _float_in("temperature", temperature, 0.0, MAX_TEMPERATURE)
        generator = _generator(seed)
        images = sample_prior(self.served.checkpoint.model, n_samples, generator=generator, temperature=temperature)
        return _grid(images, min(n_samples, GRID_COLUMNS))

    def interpolate(self, class_a: Any, class_b: Any, steps: Any, example_a: Any = 0, example_b: Any = 0) -> np.ndarray:
        """One row: real example A, ``steps`` decodings along the line between the two posterior
        means (both ends included), real example B. Examples are chosen by their index within
        their class in the checkpoint's example bank."""
        served = self.served
        last_class = max(len(served.class_names) - 1, 0)
        start = _bank_image(served, _int_in("first class", class_a, 0, last_class), example_a, "first example")
        end = _bank_image(served, _int_in("second class", class_b, 0, last_class), example_b, "second example")
        steps = _int_in("steps", steps, MIN_STEPS, MAX_STEPS)
        model = served.checkpoint.model
        frames = interpolate(model, start, end, steps)
        row = torch.cat([as_images(start, model), frames, as_images(end, model)])
        return _grid(row, len(row))

    def reconstruct(self, image: Image.Image | str | Path | None) -> Reconstruction:
        """The image as the model sees it, its reconstruction and its neg-ELBO in nats."""
        if image is None:
            raise InvalidRequest("draw a digit or upload an image first")
        served = self.served
        model = served.checkpoint.model
        try:
            pil = image if isinstance(image, Image.Image) else open_image(image)
            pixels = model_input(pil, served.checkpoint.dataset, model.config.image_shape)
        except ImageInputError as exc:
            raise InvalidRequest(str(exc)) from exc
        x = torch.from_numpy(pixels).reshape(1, model.config.input_dim)
        with torch.inference_mode():
            decoded = reconstruct(model, x)
            mu, log_var = model.encode(x)
            eps = torch.randn(ELBO_SAMPLES, mu.shape[1], generator=torch.Generator().manual_seed(0))
            z = reparameterize(mu, log_var, eps)
            terms = neg_elbo(x.expand(ELBO_SAMPLES, -1), model.decode_logits(z), mu.expand_as(z), log_var.expand_as(z))
        return Reconstruction(_grid(as_images(x, model), 1), _grid(decoded, 1),
                              float(terms.neg_elbo), float(terms.recon), float(terms.kl))

    def example_image(self, class_index: Any, example_index: Any) -> np.ndarray:
        """A real example of the bank as a uint8 image (what the Reconstruct view opens with)."""
        served = self.served
        image = _bank_image(served, _int_in("class", class_index, 0, max(len(served.class_names) - 1, 0)),
                            example_index, "example")
        return _grid(as_images(image, served.checkpoint.model), 1)

    # ---- model info and switching -----------------------------------------------------------

    def model_info(self) -> dict[str, Any]:
        served = self.served
        checkpoint = served.checkpoint
        meta = checkpoint.meta
        examples = checkpoint.examples
        source = served.source
        return {
            "serving": served.label,
            "trial_id": served.trial_id,
            "round": source.round if source else meta.get("round"),
            "following": bool(self.follow and self.experiment is None and self.search is not None),
            "generate_modes": [m for m in GENERATE_MODES if m != CLASS_GAUSSIAN or checkpoint.class_gaussians],
            "experiment": self.experiment.name if self.experiment else self.search.name if self.search else None,
            "dataset": checkpoint.dataset,
            "classes": list(served.class_names),
            "model_config": checkpoint.config.to_dict(),
            "parameters": checkpoint.model.num_parameters(),
            "metrics": {k: _rounded(v) for k, v in (meta.get("metrics") or {}).items()},
            "train_config": meta.get("train_config"),
            "example_images": 0 if examples is None else len(examples),
            "created": meta.get("created"),
        }

    def leaderboard(self) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows of the experiment's leaderboard; ``mark`` flags the best and the served trial."""
        served_id = self.served.trial_id
        if self.experiment is None:
            if self.search is None:
                return list(LEADERBOARD_COLUMNS), []
            view = read_view(self.search)
            rows = []
            for record in view.rows if view else []:
                marks = ["best so far"] if record["rank"] == 1 else []
                if str(record["trial_id"]) == served_id:
                    marks.append("serving")
                values = {**record, "mark": " + ".join(marks)}
                rows.append([_rounded(values.get(col)) for col in LEADERBOARD_COLUMNS])
            return list(LEADERBOARD_COLUMNS), rows
        rows = []
        for row in self.experiment.leaderboard:
            marks = ["best"] if row.get("is_best") else []
            if str(row["trial_id"]) == served_id:
                marks.append("serving")
            values = {**row, "mark": " + ".join(marks)}
            rows.append([_rounded(values.get(col)) for col in LEADERBOARD_COLUMNS])
        return list(LEADERBOARD_COLUMNS), rows

    def switchable_trials(self) -> list[str]:
        return self.experiment.switchable_trials() if self.experiment else []

    def switch_model(self, trial_id: Any) -> ServedModel:
        """Serve another trial's checkpoint. Loading happens outside the lock; the swap is one
        assignment under it. On any failure the current model stays served."""
        if self.experiment is None:
            if self.search is not None:
                raise InvalidRequest("the search is still running: the app follows its best checkpoint so far; "
                                     "trials can be picked once it has ended")
            raise InvalidRequest("this app serves one checkpoint (--checkpoint): there is no leaderboard to switch in")
        if not isinstance(trial_id, str) or not trial_id:
            raise InvalidRequest("choose a trial to serve")
        try:
            path = self.experiment.trial_checkpoint(trial_id)
            served = load_served(path, path.relative_to(self.experiment.best.resolve()).as_posix(), trial_id)
        except (ExperimentError, CheckpointError) as exc:
            raise InvalidRequest(f"cannot serve trial {trial_id}: {exc}") from exc
        with self._lock:
            self._served = served
        self.follow = False  # a trial picked by hand stays served
        return served


# ---- helpers -----------------------------------------------------------------------------------


def best_trial_checkpoint(experiment: Path) -> TrialCheckpoint | None:
    """The best checkpoint a running search has kept so far (its live status), or None."""
    live = read_live(experiment)
    found = live.best_checkpoint() if live else None
    if live is None or found is None:
        return None
    trial, entry = found
    try:
        path = live.checkpoint_path(entry)
    except ValueError:
        return None
    return TrialCheckpoint(trial.trial_id, int(entry.get("round", 0)), path, float(entry["val_neg_elbo"]))


def _examples(served: ServedModel):
    if served.checkpoint.examples is None:
        raise InvalidRequest("this checkpoint carries no example images to generate from; use the Prior view")
    return served.checkpoint.examples


def _bank_image(served: ServedModel, class_index: int, example_index: Any, name: str) -> torch.Tensor:
    """Example ``example_index`` of class ``class_index`` of the served model's bank (any example when the data
    had no labels)."""
    examples = _examples(served)
    candidates = torch.nonzero(examples.labels == class_index).flatten() if served.labelled else \
        torch.arange(len(examples.labels))
    if len(candidates) == 0:
        raise InvalidRequest(f"this model has no example of class {class_index}")
    index = _int_in(name, example_index, 0, len(candidates) - 1)
    return examples.images[candidates[index]]


def _grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """Images [N, C, H, W] as one uint8 grid, [H', W'] for grayscale and [H', W', 3] for colour; one image
    comes back as itself, unpadded (make_grid's rule)."""
    grid = grid_to_uint8(images, nrow)
    return np.ascontiguousarray((grid[..., 0] if images.shape[1] == 1 else grid).numpy())


def _generator(seed: Any) -> torch.Generator:
    return torch.Generator().manual_seed(_int_in("seed", seed, 0, MAX_SEED))


def _number(name: str, value: Any) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidRequest(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    number = _number(name, value)
    if number != int(number):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}")
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {int(number)}")
    return int(number)


def _float_in(name: str, value: Any, low: float, high: float) -> float:
    number = _number(name, value)
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return number


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
