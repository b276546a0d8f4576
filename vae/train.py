"""Training loop over in-memory tensors, evaluation, and a CLI that trains one configuration.

    python -m vae.train --latent-width 512 --reparam-width 64 --rounds 10 --data-dir ../shared/mnist
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LRScheduler

from vae.config import ModelConfig, TrainConfig
from vae.data import DATASETS, DataError, DataSplits, load_splits
from vae.loss import bits_per_dim, neg_elbo
from vae.model import VAE, build_model
from vae.options import Arguments, OneLineParser
from vae.schedule import CosineSegments

ACTIVE_UNIT_THRESHOLD = 0.01


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss became NaN or infinite."""


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def make_optimizer(model: VAE, train_config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (Adam with decoupled weight decay; with ``weight_decay`` 0 it is Adam) with its fused kernel:
    one op per step for all parameters instead of about ten per parameter tensor, which is a large share
    of a step for the small models (see benchmarks/train_throughput.py)."""
    return torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay,
                             fused=True)


def make_lr_scheduler(optimizer: torch.optim.Optimizer, train_config: TrainConfig) -> LRScheduler:
    """The learning-rate schedule, stepped once after each round: "cosine" is ``vae.schedule``'s cosine
    segments (ending at ``lr_segment_ends`` and at ``rounds``) as the multiplier of torch's LambdaLR,
    "constant" keeps ``lr``."""
    if train_config.lr_schedule == "cosine":
        plan = CosineSegments([*train_config.lr_segment_ends, train_config.rounds], restart=train_config.lr_restart)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def cosine_plan(scheduler: LRScheduler) -> CosineSegments | None:
    """The cosine plan a scheduler of ``make_lr_scheduler`` follows (None for a constant rate)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        plan = scheduler.lr_lambdas[0]
        return plan if isinstance(plan, CosineSegments) else None
    return None


def kl_weight(round_number: int, train_config: TrainConfig) -> float:
    """Weight of the KL term in the objective during round ``round_number`` (1-based): with ``warmup_rounds``
    N > 0 it is beta * (round - 1) / N for the first N rounds (0, 1/N, ..., (N-1)/N), then beta."""
    n = train_config.warmup_rounds
    return train_config.beta * (min(1.0, (round_number - 1) / n) if n > 0 else 1.0)


def round_indices(n: int, round_images: int | None, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The training images of one round, in the order they are used: a random permutation of all ``n``
    (an epoch) when ``round_images`` is None or ``n``; otherwise ``round_images`` of them, drawn without
    replacement within each pass over the data (whole permutations, then the first part of one more)."""
    if round_images is None or round_images == n:
        return torch.randperm(n, device=device, generator=generator)
    full, rest = divmod(round_images, n)
    parts = [torch.randperm(n, device=device, generator=generator) for _ in range(full)]
    if rest:
        parts.append(torch.randperm(n, device=device, generator=generator)[:rest])
    return torch.cat(parts)


def train_round(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    *,
    batch_size: int,
    round_images: int | None = None,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One round over ``images`` [N, C*H*W] (``round_indices``: an epoch, or ``round_images`` images), cut
    into batches by index, minimising ``vae.loss.neg_elbo`` (its objective, with the KL weighted by ``beta``).

    Returns the round's means in nats per image (``neg_elbo``, ``recon``, ``kl``), ``images`` trained on,
    ``samples_per_s``, and the split of wall time between data (``data_s``: shuffling and gathering) and
    steps (``step_s``). Raises NonFiniteLossError if the loss became NaN or infinite.
    """
    model.train()
    start = time.perf_counter()
    order = round_indices(images.shape[0], round_images, generator, images.device)
    n = order.shape[0]
    recon_total = torch.zeros((), device=images.device)
    kl_total = torch.zeros((), device=images.device)
    data_s = step_s = 0.0
    for batch_indices in order.split(batch_size):
        t0 = time.perf_counter()
        x = torch.index_select(images, 0, batch_indices)  # 3x faster than images[idx]
        t1 = time.perf_counter()
        out = model(x)
        terms = neg_elbo(x, out.logits, out.mu, out.log_var, beta)
        optimizer.zero_grad(set_to_none=True)
        terms.objective.backward()
        optimizer.step()
        recon_total.add_(terms.recon.detach(), alpha=x.shape[0])  # summed on the device: no sync per step
        kl_total.add_(terms.kl.detach(), alpha=x.shape[0])
        t2 = time.perf_counter()
        data_s += t1 - t0
        step_s += t2 - t1
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    elapsed = time.perf_counter() - start
    recon, kl = recon_total.item() / n, kl_total.item() / n
    if not (math.isfinite(recon) and math.isfinite(kl)):
        raise NonFiniteLossError(f"training loss became non-finite (neg_elbo={recon + kl})")
    return {
        "neg_elbo": recon + kl,
        "recon": recon,
        "kl": kl,
        "images": n,
        "samples_per_s": n / elapsed,
        "time_s": elapsed,
        "data_s": data_s,
        "step_s": step_s,
    }


@torch.inference_mode()
def evaluate(model: VAE, images: torch.Tensor, *, batch_size: int = 2000, seed: int = 0) -> dict[str, float]:
    """Single-sample neg-ELBO estimate on ``images`` (nats per image, seeded so it is repeatable, and the same in
    bits per dimension), its reconstruction and KL parts, and ``active_units``: code dimensions whose posterior
    mean varies across the data (variance > 0.01), a direct read-out of posterior collapse."""
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    totals = torch.zeros(3, device=images.device)
    mus = []
    for first in range(0, images.shape[0], batch_size):
        x = images[first : first + batch_size]
        mu, log_var = model.encode(x)
        noise = torch.randn(mu.shape, device=mu.device, generator=generator)
        z = model.reparameterize(mu, log_var, noise)
        terms = neg_elbo(x, model.decode_logits(z), mu, log_var)
        totals += torch.stack([terms.neg_elbo, terms.recon, terms.kl]) * x.shape[0]
        mus.append(mu)
    means = (totals / images.shape[0]).tolist()
    active = int((torch.cat(mus).var(dim=0) > ACTIVE_UNIT_THRESHOLD).sum().item())
    return {"neg_elbo": means[0], "recon": means[1], "kl": means[2], "active_units": active,
            "bits_per_dim": bits_per_dim(means[0], images.shape[1])}


def best_of(history: list[dict[str, float]]) -> dict[str, float] | None:
    """The round's metrics with the lowest validation neg-ELBO (None before the first round)."""
    return min(history, key=lambda h: h["val_neg_elbo"]) if history else None


class RoundHistory:
    """The best round of a run's ``history`` (one metrics dict per round, with ``round`` and ``val_neg_elbo``)."""

    history: list[dict[str, float]]

    @property
    def best_val_neg_elbo(self) -> float:
        best = best_of(self.history)
        return best["val_neg_elbo"] if best is not None else math.inf

    @property
    def best_round(self) -> int:
        """The round with the lowest validation neg-ELBO so far (0 before the first)."""
        best = best_of(self.history)
        return int(best["round"]) if best is not None else 0


@dataclass
class TrainState(RoundHistory):
    """Everything training needs to go on where it stopped: the model, the optimizer, the lr schedule, the
    shuffling generator, the rounds done and their metrics. ``fit`` advances it in place, so a caller that
    saves it (a search trial's checkpoint) and hands it back to ``fit`` resumes the same run."""

    model: VAE
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    generator: torch.Generator
    round: int = 0  # rounds completed
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def fresh(cls, model_config: ModelConfig, train_config: TrainConfig, device: torch.device) -> TrainState:
        """A new, seeded run: initial weights, optimizer, schedule and generator from ``train_config.seed``."""
        seed_everything(train_config.seed)
        model = build_model(model_config).to(device)
        optimizer = make_optimizer(model, train_config)
        return cls(model, optimizer, make_lr_scheduler(optimizer, train_config),
                   torch.Generator(device=device).manual_seed(train_config.seed))

    @property
    def images(self) -> int:
        """Training images seen so far (counted over the rounds done)."""
        return int(self.history[-1]["images"]) if self.history else 0


@dataclass
class FitResult(RoundHistory):
    model: VAE  # with restore_best: the weights of the best round by validation, else the last round's
    history: list[dict[str, float]] = field(default_factory=list)


RoundCallback = Callable[[TrainState, dict[str, float]], bool | None]


def rounds_before(deadline: float, now: float, seconds_per_round: float) -> int:
    """Whole rounds that fit before ``deadline`` (wall-clock seconds, as time.time()), keeping half a round
    in hand for what follows the last one (a checkpoint, a report)."""
    return max(0, math.floor((deadline - now) / seconds_per_round - 0.5))


def fit(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: DataSplits,
    *,
    device: torch.device | None = None,
    state: TrainState | None = None,
    on_round: RoundCallback | None = None,
    restore_best: bool = False,
    deadline: float | None = None,
) -> FitResult:
    """Train rounds ``state.round + 1 .. train_config.rounds`` with AdamW, the lr schedule and KL warm-up,
    validating after each round; the one training loop of the project (a search trial runs it too).

    ``state``: where to start (``TrainState.fresh`` when None; a restored state resumes its run).
    ``on_round(state, metrics)`` runs after each round, once ``state`` includes it (``metrics["last_round"]``
    says whether fit will stop after it); returning True stops training there. ``restore_best``: end with the
    weights of the round with the lowest validation neg-ELBO among those this call trains (early stopping by
    validation, kept in memory).
    ``deadline``: a wall-clock time (``time.time()``) to be done by. After each round, the rounds that still
    fit (by the mean duration of this call's rounds so far) bound the run: a cosine schedule's current
    segment is re-planned to decay to near zero by then (never past its planned end), and training stops
    when no further round fits.
    Raises NonFiniteLossError when the loss becomes NaN or infinite.
    """
    device = device or pick_device()
    state = state or TrainState.fresh(model_config, train_config, device)
    data = data.to(device)
    val_images = data.val.images[: train_config.val_images]
    plan = cosine_plan(state.scheduler)
    train_size = data.train.images.shape[0]
    best_weights: dict[str, torch.Tensor] | None = None
    best_val = state.best_val_neg_elbo
    start = time.perf_counter()
    done_here = 0
    while state.round < min(train_config.rounds, plan.end if plan else train_config.rounds):
        round_number = state.round + 1
        lr = state.optimizer.param_groups[0]["lr"]
        beta = kl_weight(round_number, train_config)
        train_metrics = train_round(state.model, state.optimizer, data.train.images, batch_size=train_config.batch_size,
                                    round_images=train_config.round_images, beta=beta, generator=state.generator)
        val_started = time.perf_counter()
        val_metrics = evaluate(state.model, val_images, seed=train_config.seed)
        now = time.perf_counter()
        images = state.images + int(train_metrics.pop("images"))
        metrics = {f"train_{k}": v for k, v in train_metrics.items()}
        metrics.update({f"val_{k}": v for k, v in val_metrics.items()})
        metrics.update(round=round_number, images=images, epochs=images / train_size, lr=lr, kl_weight=beta,
                       val_time_s=now - val_started, elapsed_s=now - start)
        state.round = round_number
        state.history.append(metrics)
        done_here += 1
        if metrics["val_neg_elbo"] < best_val:
            best_val = metrics["val_neg_elbo"]
            if restore_best:
                best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        fits = None
        if deadline is not None:
            fits = rounds_before(deadline, time.time(), (now - start) / done_here)
            if plan is not None:
                plan.fit_to(state.round, state.round + fits)
        state.scheduler.step()
        last = fits == 0 or state.round >= min(train_config.rounds, plan.end if plan else train_config.rounds)
        metrics["last_round"] = last
        if (on_round is not None and on_round(state, metrics)) or last:
            break
    if best_weights is not None:
        state.model.load_state_dict(best_weights)
    return FitResult(state.model, state.history)


MODEL_OPTIONS = Arguments(ModelConfig)
TRAIN_OPTIONS = Arguments(TrainConfig)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m vae.train",
        description="Train one VAE and write a checkpoint and a PNG of samples and reconstructions. The model "
        "and training options are the fields of vae.config's ModelConfig and TrainConfig.",
    )
    MODEL_OPTIONS.add_to(parser)
    TRAIN_OPTIONS.add_to(parser)
    data = parser.add_argument_group("data and output")
    data.add_argument("--dataset", default="mnist",
                      help=f"{' or '.join(sorted(DATASETS))}, or the path of your own images: a folder (one sub-folder "
                      "per class, or unlabelled images) or an .npz (default mnist)")
    data.add_argument("--data-dir", default=None,
                      help="folder with the IDX *-ubyte[.gz] files (default: $VAESEARCH_DATA_DIR, else download)")
    data.add_argument("--image-size", type=int, default=None, metavar="S",
                      help="resize your own images to S x S (needed when they differ in size)")
    data.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    data.add_argument("--out", default=None, help="output folder (default runs/vae-<latent>-<reparam>)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from vae.checkpoint import save_checkpoint
    from vae.class_gaussians import fit_class_gaussians
    from vae.sample import as_images, reconstruct, sample_prior, save_grid

    try:
        args = _parse_args(argv)
    except SystemExit as exc:  # --help, or one line about a mistake on the command line (OneLineParser)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        train_config = TrainConfig(**TRAIN_OPTIONS.values(args))
        device = pick_device(args.device)
        data = load_splits(args.dataset, args.data_dir, seed=train_config.seed, device=device,
                           image_size=args.image_size, log_fn=lambda m: print(m, file=sys.stderr))
        channels, height, width = data.image_shape
        model_config = ModelConfig(**MODEL_OPTIONS.values(args), channels=channels, height=height, width=width)
        out = Path(args.out or f"runs/vae-{model_config.latent_width}-{model_config.reparam_width}")
        try:  # fail on an unusable --out now, not after training
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot write to --out {out}: {exc.strerror}") from exc
    except (ValueError, DataError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(total=train_config.rounds, desc=f"vae {model_config.latent_width}/{model_config.reparam_width}",
               unit="round")

    def show(state: TrainState, metrics: dict[str, float]) -> None:
        bar.set_postfix(train=f"{metrics['train_neg_elbo']:.1f}", val=f"{metrics['val_neg_elbo']:.1f}",
                        sps=f"{metrics['train_samples_per_s']:.0f}")
        bar.update(1)

    try:
        result = fit(model_config, train_config, data, device=device, on_round=show)
    except NonFiniteLossError as exc:
        bar.close()
        print(f"error: {exc}; try a smaller --lr", file=sys.stderr)
        return 1
    bar.close()
    test = evaluate(result.model, data.test.images, seed=train_config.seed)
    final = dict(result.history[-1], **{f"test_{k}": v for k, v in test.items()})
    gaussians = fit_class_gaussians(result.model, data.train.images, data.train.labels, len(data.class_names)) \
        if data.labelled else None
    save_checkpoint(out / "checkpoint", result.model, dataset=args.dataset, metrics=final, train_config=train_config,
                    examples=data.test, class_gaussians=gaussians, class_names=data.class_names)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    originals = data.test.images[:32]
    images = torch.cat([sample_prior(result.model, 32, generator=generator),
                        as_images(originals, result.model), reconstruct(result.model, originals)])
    save_grid(images, out / "samples.png", nrow=16)
    print(f"val neg-ELBO {final['val_neg_elbo']:.2f} nats, test neg-ELBO {test['neg_elbo']:.2f} nats "
          f"({test['bits_per_dim']:.4f} bits/dim; recon {test['recon']:.2f} + KL {test['kl']:.2f}); wrote "
          f"{out}/checkpoint and {out}/samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
