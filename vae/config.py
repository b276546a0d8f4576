"""Typed, frozen configuration values for the model and the training loop."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

IMAGE_SIDE = 28
INPUT_DIM = IMAGE_SIDE * IMAGE_SIDE
# Bounds a checkpoint's model_config must satisfy before any model is built from it (vae.checkpoint):
# generous for this project's search space (latent 16..1024, code 2..128) and small enough that the
# largest model allowed, at the deepest depth, fits in a few hundred MB.
MAX_LATENT_WIDTH = 4096
MAX_REPARAM_WIDTH = 1024
MAX_INPUT_DIM = 4 * INPUT_DIM
MAX_DEPTH = 3  # hidden layers on each side of the bottleneck
MAX_CONV_CHANNELS = 64  # the convolutional stem's first layer (its second has twice as many)
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a LinearVAE.

    Attributes:
        latent_width: width of the hidden layer between the pixels and the bottleneck, on both the
            encoder and the decoder side (the article tried 32..512).
        reparam_width: dimension of the sampled code z, i.e. of the mean and log-variance heads
            (the article tried 4..64).
        input_dim: number of pixels of a flattened image (28 * 28 for MNIST).
        depth: hidden layers (each ``latent_width`` wide, ReLU) on each side of the bottleneck,
            1..MAX_DEPTH; depth 1 is the article's LinearVAE.
        conv_channels: 0 (default): the pixels feed the first hidden layer directly, the article's MLP.
            c > 0: a convolutional stem, for 28x28 images: two 4x4 stride-2 convolutions (c, then 2c
            channels, ReLU) turn the image into 2c maps of 7x7 that feed the first hidden layer, and the
            decoder's last hidden layer feeds their two transposes. Convolutions share weights across
            the image, which generalises far better than a dense first layer when training images are
            few (benchmarks/time_to_quality.py).
    """

    latent_width: int
    reparam_width: int
    input_dim: int = INPUT_DIM
    depth: int = 1
    conv_channels: int = 0

    def __post_init__(self) -> None:
        for name in ("latent_width", "reparam_width", "input_dim", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.depth > MAX_DEPTH:
            raise ValueError(f"depth must be 1..{MAX_DEPTH}, got {self.depth}")
        channels = self.conv_channels
        if not isinstance(channels, int) or isinstance(channels, bool) or not 0 <= channels <= MAX_CONV_CHANNELS:
            raise ValueError(f"conv_channels must be an integer from 0 to {MAX_CONV_CHANNELS}, got {channels!r}")
        if channels and self.input_dim != INPUT_DIM:
            raise ValueError(f"conv_channels > 0 needs {IMAGE_SIDE}x{IMAGE_SIDE} images, "
                             f"got input_dim {self.input_dim}")

    @property
    def stem_features(self) -> int:
        """Features between the convolutional stem and the first / last hidden layer: the pixels without one."""
        return 2 * self.conv_channels * (IMAGE_SIDE // 4) ** 2 if self.conv_channels else self.input_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of ``to_dict``; a missing field takes its default: ``depth`` 1 (checkpoints of format 1),
        ``conv_channels`` 0 (formats 1 and 2)."""
        return cls(**{f.name: int(data[f.name]) for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for one training run (one search trial).

    ``lr_schedule``: "constant", or "cosine": the learning rate decays from ``lr`` to 0 over
    ``epochs`` (torch's CosineAnnealingLR, stepped once per epoch). ``warmup_epochs``: KL warm-up,
    the weight of the KL term rises linearly from 0 to ``beta`` over that many epochs (0: none);
    see ``vae.train.kl_weight``. Reported neg-ELBOs are always the true ones (weight 1).
    """

    lr: float = 3e-4
    batch_size: int = 128
    epochs: int = 10
    beta: float = 1.0
    seed: int = 0
    lr_schedule: str = "constant"
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        if not (self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not isinstance(self.warmup_epochs, int) or isinstance(self.warmup_epochs, bool) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")

    def to_dict(self) -> dict:
        return asdict(self)
