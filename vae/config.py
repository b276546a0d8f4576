"""Typed, frozen configuration values for the model and the training loop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from vae.options import option, python_only

IMAGE_SIDE = 28  # MNIST's and Fashion-MNIST's images: 1 x 28 x 28
INPUT_DIM = IMAGE_SIDE * IMAGE_SIDE
IMAGE_CHANNELS = (1, 3)  # grayscale or RGB
MIN_SIDE, MAX_SIDE = 16, 64  # the image sides a model (and a user's data set) may have
# Bounds a checkpoint's model_config must satisfy before any model is built from it (vae.checkpoint):
# generous for this project's search space (latent 32..1024, code 4..64) and small enough that the
# largest model allowed, at the deepest depth, fits in a few hundred MB.
MAX_LATENT_WIDTH = 4096
MAX_REPARAM_WIDTH = 1024
MAX_DEPTH = 3  # hidden layers on each side of the bottleneck
MAX_CONV_CHANNELS = 64  # the convolutional stem's first layer (its second has twice as many)
LRSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)
# The sections of python -m vae.train's help.
MODEL = "model"
TRAINING = "training"


Family = Literal["mlp", "conv"]
FAMILIES: tuple[str, ...] = get_args(Family)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a VAE (vae.model). The model family follows from it: ``conv`` with a convolutional stem
    (``conv_channels`` > 0), else ``mlp``, the article's LinearVAE.

    Attributes:
        latent_width: width of the hidden layer between the pixels and the bottleneck, on both the
            encoder and the decoder side (the article tried 32..512).
        reparam_width: dimension of the sampled code z, i.e. of the mean and log-variance heads
            (the article tried 4..64).
        depth: hidden layers (each ``latent_width`` wide, ReLU) on each side of the bottleneck,
            1..MAX_DEPTH; depth 1 is the article's LinearVAE.
        conv_channels: 0 (default): the pixels feed the first hidden layer directly, the article's MLP.
            c > 0: a convolutional stem: two 4x4 stride-2 convolutions (c, then 2c channels, ReLU) turn the
            image into 2c maps of a quarter of its sides that feed the first hidden layer, and the decoder's
            last hidden layer feeds their two transposes. Convolutions share weights across the image, which
            generalises far better than a dense first layer when training images are few
            (benchmarks/README.md). Both sides must be divisible by 4.
        channels, height, width: the images' shape, C x H x W (from the data: 1 x 28 x 28 for MNIST).
    """

    latent_width: int = option(512, group=MODEL, help="hidden layer width on each side of the code")
    reparam_width: int = option(64, group=MODEL, help="dimension of the code z (the mean and log-variance heads)")
    depth: int = option(1, group=MODEL, help=f"hidden layers on each side of the bottleneck, 1..{MAX_DEPTH} (1: the "
                        "article's LinearVAE)")
    conv_channels: int = option(0, group=MODEL, help="convolutional stem: 0 none (the article's MLP), C: two 4x4 "
                                "stride-2 convolutions of C and 2C channels before the first hidden layer, their "
                                "transposes after the last")
    channels: int = python_only(1, help="image channels: 1 (grayscale) or 3 (RGB), from the data")
    height: int = python_only(IMAGE_SIDE, help="image height in pixels, from the data")
    width: int = python_only(IMAGE_SIDE, help="image width in pixels, from the data")

    def __post_init__(self) -> None:
        for name in ("latent_width", "reparam_width", "depth", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.depth > MAX_DEPTH:
            raise ValueError(f"depth must be 1..{MAX_DEPTH}, got {self.depth}")
        if self.channels not in IMAGE_CHANNELS or isinstance(self.channels, bool):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if max(self.height, self.width) > MAX_SIDE:
            raise ValueError(f"image sides must be at most {MAX_SIDE}, got {self.height}x{self.width}")
        channels = self.conv_channels
        if not isinstance(channels, int) or isinstance(channels, bool) or not 0 <= channels <= MAX_CONV_CHANNELS:
            raise ValueError(f"conv_channels must be an integer from 0 to {MAX_CONV_CHANNELS}, got {channels!r}")
        if channels and (self.height % 4 or self.width % 4):
            raise ValueError(f"conv_channels > 0 needs image sides divisible by 4, got {self.height}x{self.width}")

    @property
    def family(self) -> str:
        """"conv" with a convolutional stem, else "mlp"."""
        return "conv" if self.conv_channels else "mlp"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def input_dim(self) -> int:
        """Values of a flattened image: channels x height x width."""
        return self.channels * self.height * self.width

    @property
    def stem_features(self) -> int:
        """Features between the convolutional stem and the first / last hidden layer: the pixels without one."""
        if not self.conv_channels:
            return self.input_dim
        return 2 * self.conv_channels * (self.height // 4) * (self.width // 4)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of ``to_dict``; a missing field takes its default: ``depth`` 1 (checkpoints of format 1),
        ``conv_channels`` 0 (formats 1 and 2), a 1 x 28 x 28 image (formats 1 to 3, which stored ``input_dim``:
        784, the only value they could have)."""
        values = {f.name: int(data[f.name]) for f in fields(cls) if f.name in data}
        if "input_dim" in data and int(data["input_dim"]) != INPUT_DIM:
            raise ValueError(f"input_dim {data['input_dim']!r} is not a 28x28 image, the only shape of its format")
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for one training run (one search trial).

    Training runs in **rounds** of ``round_images`` training images (None: one epoch, every training image
    once); after each round the model is validated. A search sets a fixed number of images per round, so
    that its budgets (ASHA's rungs, the most a trial trains) mean the same work on a data set of 8,000 or
    of 54,000 images.

    ``lr_schedule``: "constant", or "cosine": cosine decays to near 0 that end at the rounds in
    ``lr_segment_ends`` and at ``rounds``, each restarting at ``lr_restart`` times the previous peak
    (vae.schedule; a search uses one segment, and the deadline it gives ``vae.train.fit`` can end it
    sooner). ``warmup_rounds``: KL warm-up, the weight of the KL term rises
    linearly from 0 to ``beta`` over that many rounds (0: none); see ``vae.train.kl_weight``. Reported
    neg-ELBOs are always the true ones (weight 1). ``weight_decay``: AdamW's decoupled weight decay.
    ``val_images``: validate on the first this many validation images after each round (None: all).
    """

    lr: float = option(3e-4, group=TRAINING, help="AdamW learning rate")
    batch_size: int = option(128, group=TRAINING, help="minibatch size")
    rounds: int = option(10, group=TRAINING, help="training rounds (each --round-images images, else one epoch)")
    round_images: int | None = option(None, group=TRAINING, metavar="N", shown_default="one epoch",
                                      help="training images per round")
    beta: float = option(1.0, group=TRAINING, help="weight of the KL term in the objective")
    seed: int = option(0, group=TRAINING, help="seed of the data split, the initial weights and the noise")
    lr_schedule: LRSchedule = option(
        "constant", group=TRAINING, help="learning-rate schedule: constant, or cosine to near 0 by the last round")
    lr_segment_ends: tuple[int, ...] = python_only((), help="rounds where a cosine segment ends before the last")
    lr_restart: float = python_only(1.0, help="each cosine segment's peak, relative to the previous one's")
    warmup_rounds: int = option(0, group=TRAINING, flag="--kl-warmup-rounds",
                                help="rounds over which the KL weight rises linearly from 0 to --beta (0: none)")
    weight_decay: float = option(0.0, group=TRAINING, help="AdamW's decoupled weight decay")
    val_images: int | None = option(None, group=TRAINING, metavar="N", shown_default="all",
                                    help="validation images evaluated after each round")

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        for name in ("batch_size", "rounds"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("round_images", "val_images"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not (isinstance(self.beta, (int, float)) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not all(_positive_int(end) for end in self.lr_segment_ends):
            raise ValueError(f"lr_segment_ends must be positive integers, got {self.lr_segment_ends!r}")
        if not (isinstance(self.lr_restart, (int, float)) and 0 < self.lr_restart <= 1):
            raise ValueError(f"lr_restart must be in (0, 1], got {self.lr_restart!r}")
        if not isinstance(self.warmup_rounds, int) or isinstance(self.warmup_rounds, bool) or self.warmup_rounds < 0:
            raise ValueError(f"warmup_rounds must be an integer >= 0, got {self.warmup_rounds!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < 1):
            raise ValueError(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of ``to_dict``; also reads the form checkpoints stored before rounds (``epochs``,
        ``warmup_epochs``: a round was then one epoch). Unknown keys are ignored."""
        renamed = {"epochs": "rounds", "warmup_epochs": "warmup_rounds"}
        values = {renamed.get(k, k): v for k, v in data.items()}
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
