"""Training loop over in-memory tensors, evaluation, and a CLI that trains one configuration.

    python -m vae.train --latent-width 512 --reparam-width 64 --epochs 10 --data-dir ../shared/mnist
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

from vae.config import ModelConfig, TrainConfig
from vae.data import DATASETS, DataError, DataSplits, load_splits
from vae.loss import LossTerms, neg_elbo
from vae.model import LinearVAE

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


def make_optimizer(model: LinearVAE, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel: one op per step for all parameters instead of about ten per
    parameter tensor, which is a large share of a step for the small models (see
    benchmarks/train_throughput.py)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer, train_config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule over ``train_config.epochs`` epochs, stepped once after each epoch:
    "cosine" is torch's CosineAnnealingLR down to 0, "constant" keeps ``lr``."""
    if train_config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train_config.epochs)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def kl_weight(epoch: int, train_config: TrainConfig) -> float:
    """Weight of the KL term in the objective during ``epoch`` (1-based): with ``warmup_epochs`` N > 0
    it is beta * (epoch - 1) / N for the first N epochs (0, 1/N, ..., (N-1)/N), then beta."""
    n = train_config.warmup_epochs
    return train_config.beta * (min(1.0, (epoch - 1) / n) if n > 0 else 1.0)


def train_epoch(
    model: LinearVAE,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    *,
    batch_size: int,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
    loss_fn: Callable[..., LossTerms] = neg_elbo,
) -> dict[str, float]:
    """One pass over ``images`` [N, 784] in a random order, cut into batches by index.
    ``loss_fn``: the loss minimised, ``vae.loss.neg_elbo`` or the same as one node, ``vae.fused_loss.neg_elbo``.

    Returns epoch means in nats per image (``neg_elbo``, ``recon``, ``kl``), ``samples_per_s``, and
    the split of wall time between data (``data_s``: shuffling and gathering) and steps (``step_s``).
    Raises NonFiniteLossError if the loss became NaN or infinite.
    """
    model.train()
    n = images.shape[0]
    start = time.perf_counter()
    perm = torch.randperm(n, device=images.device, generator=generator)
    recon_total = torch.zeros((), device=images.device)
    kl_total = torch.zeros((), device=images.device)
    data_s = step_s = 0.0
    for batch_indices in perm.split(batch_size):
        t0 = time.perf_counter()
        x = torch.index_select(images, 0, batch_indices)  # 3x faster than images[idx]
        t1 = time.perf_counter()
        out = model(x)
        terms = loss_fn(x, out.logits, out.mu, out.log_var, beta)
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
        "samples_per_s": n / elapsed,
        "time_s": elapsed,
        "data_s": data_s,
        "step_s": step_s,
    }


@torch.inference_mode()
def evaluate(model: LinearVAE, images: torch.Tensor, *, batch_size: int = 2000, seed: int = 0) -> dict[str, float]:
    """Single-sample neg-ELBO estimate on ``images`` (nats per image, seeded so it is repeatable),
    its reconstruction and KL parts, and ``active_units``: code dimensions whose posterior mean
    varies across the data (variance > 0.01), a direct read-out of posterior collapse."""
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
    return {"neg_elbo": means[0], "recon": means[1], "kl": means[2], "active_units": active}


def best_of(history: list[dict[str, float]]) -> dict[str, float] | None:
    """The epoch's metrics with the lowest validation neg-ELBO (None before the first epoch)."""
    return min(history, key=lambda h: h["val_neg_elbo"]) if history else None


@dataclass
class TrainState:
    """Everything training needs to go on where it stopped: the model, Adam, the lr schedule, the
    shuffling generator, the epochs done and their metrics. ``fit`` advances it in place, so a caller
    that saves it (a search trial's checkpoint) and hands it back to ``fit`` resumes the same run."""

    model: LinearVAE
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def fresh(cls, model_config: ModelConfig, train_config: TrainConfig, device: torch.device) -> TrainState:
        """A new, seeded run: initial weights, optimizer, schedule and generator from ``train_config.seed``."""
        seed_everything(train_config.seed)
        model = LinearVAE(model_config).to(device)
        optimizer = make_optimizer(model, train_config.lr)
        return cls(model, optimizer, make_lr_scheduler(optimizer, train_config),
                   torch.Generator(device=device).manual_seed(train_config.seed))

    @property
    def best_val_neg_elbo(self) -> float:
        best = best_of(self.history)
        return best["val_neg_elbo"] if best is not None else math.inf

    @property
    def best_epoch(self) -> int:
        """The epoch with the lowest validation neg-ELBO so far (0 before the first)."""
        best = best_of(self.history)
        return int(best["epoch"]) if best is not None else 0


@dataclass
class FitResult:
    model: LinearVAE  # with restore_best: the weights of the best epoch by validation, else the last epoch's
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_val_neg_elbo(self) -> float:
        return best_of(self.history)["val_neg_elbo"]

    @property
    def best_epoch(self) -> int:
        return int(best_of(self.history)["epoch"])


EpochCallback = Callable[[TrainState, dict[str, float]], bool | None]


def fit(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: DataSplits,
    *,
    device: torch.device | None = None,
    state: TrainState | None = None,
    on_epoch: EpochCallback | None = None,
    restore_best: bool = False,
    time_budget_s: float | None = None,
) -> FitResult:
    """Train for epochs ``state.epoch + 1 .. train_config.epochs`` with Adam, the lr schedule and KL
    warm-up, evaluating on validation after each epoch; the one training loop of the project (a search
    trial runs it too).

    ``state``: where to start (``TrainState.fresh`` when None; a restored state resumes its run).
    ``on_epoch(state, metrics)`` runs after each epoch, once ``state`` includes it; returning True stops
    training there. ``restore_best``: end with the weights of the epoch with the lowest validation
    neg-ELBO among those this call trains (early stopping by validation, kept in memory).
    ``time_budget_s``: stop before an epoch that would end past this many seconds of wall time (judged by
    the last epoch's duration).
    Raises NonFiniteLossError when the loss becomes NaN or infinite.
    """
    device = device or pick_device()
    state = state or TrainState.fresh(model_config, train_config, device)
    data = data.to(device)
    best_weights: dict[str, torch.Tensor] | None = None
    best_val = state.best_val_neg_elbo
    start = last = time.perf_counter()
    for epoch in range(state.epoch + 1, train_config.epochs + 1):
        lr = state.optimizer.param_groups[0]["lr"]
        beta = kl_weight(epoch, train_config)
        train_metrics = train_epoch(state.model, state.optimizer, data.train.images,
                                    batch_size=train_config.batch_size, beta=beta, generator=state.generator)
        state.scheduler.step()
        val_started = time.perf_counter()
        val_metrics = evaluate(state.model, data.val.images, seed=train_config.seed)
        now = time.perf_counter()
        metrics = {f"train_{k}": v for k, v in train_metrics.items()}
        metrics.update({f"val_{k}": v for k, v in val_metrics.items()})
        metrics.update(epoch=epoch, lr=lr, kl_weight=beta, val_time_s=now - val_started, elapsed_s=now - start)
        state.epoch = epoch
        state.history.append(metrics)
        if metrics["val_neg_elbo"] < best_val:
            best_val = metrics["val_neg_elbo"]
            if restore_best:
                best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        if on_epoch is not None and on_epoch(state, metrics):
            break
        if time_budget_s is not None and now - start + (now - last) > time_budget_s:
            break
        last = now
    if best_weights is not None:
        state.model.load_state_dict(best_weights)
    return FitResult(state.model, state.history)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vae.train",
        description="Train one LinearVAE and write a checkpoint and a PNG of samples and reconstructions.",
    )
    parser.add_argument("--latent-width", type=int, default=512, help="hidden layer width (default 512)")
    parser.add_argument("--reparam-width", type=int, default=64, help="dimension of the code z (default 64)")
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (default 128)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--beta", type=float, default=1.0, help="weight of the KL term in the objective (default 1)")
    parser.add_argument("--depth", type=int, default=1,
                        help="hidden layers on each side of the bottleneck, 1..3 (default 1: the article's LinearVAE)")
    parser.add_argument("--conv-channels", type=int, default=0,
                        help="convolutional stem: 0 none (default: the article's MLP), C: two 4x4 stride-2 "
                        "convolutions of C and 2C channels before the first hidden layer, their transposes after "
                        "the last")
    parser.add_argument("--lr-schedule", default="constant",
                        help="learning-rate schedule over the epochs: constant or cosine (default constant)")
    parser.add_argument("--kl-warmup-epochs", type=int, default=0,
                        help="epochs over which the KL weight rises linearly from 0 to --beta (default 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data split, init and noise (default 0)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the IDX *-ubyte[.gz] files (default: $VAESEARCH_DATA_DIR, else download)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    parser.add_argument("--out", default=None, help="output folder (default runs/vae-<latent>-<reparam>)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from vae.checkpoint import save_checkpoint
    from vae.class_gaussians import fit_class_gaussians
    from vae.sample import reconstruct, sample_prior, save_grid

    args = _parse_args(argv)
    try:
        model_config = ModelConfig(args.latent_width, args.reparam_width, depth=args.depth,
                                   conv_channels=args.conv_channels)
        train_config = TrainConfig(lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                                   beta=args.beta, seed=args.seed, lr_schedule=args.lr_schedule,
                                   warmup_epochs=args.kl_warmup_epochs)
        device = pick_device(args.device)
        data = load_splits(args.dataset, args.data_dir, seed=args.seed, device=device,
                           log_fn=lambda m: print(m, file=sys.stderr))
        out = Path(args.out or f"runs/vae-{args.latent_width}-{args.reparam_width}")
        try:  # fail on an unusable --out now, not after training
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot write to --out {out}: {exc.strerror}") from exc
    except (ValueError, DataError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(total=train_config.epochs, desc=f"vae {args.latent_width}/{args.reparam_width}", unit="epoch")

    def show(state: TrainState, metrics: dict[str, float]) -> None:
        bar.set_postfix(train=f"{metrics['train_neg_elbo']:.1f}", val=f"{metrics['val_neg_elbo']:.1f}",
                        sps=f"{metrics['train_samples_per_s']:.0f}")
        bar.update(1)

    try:
        result = fit(model_config, train_config, data, device=device, on_epoch=show)
    except NonFiniteLossError as exc:
        bar.close()
        print(f"error: {exc}; try a smaller --lr", file=sys.stderr)
        return 1
    bar.close()
    test = evaluate(result.model, data.test.images, seed=args.seed)
    final = dict(result.history[-1], test_neg_elbo=test["neg_elbo"], test_recon=test["recon"], test_kl=test["kl"])
    save_checkpoint(out / "checkpoint", result.model, dataset=args.dataset, metrics=final,
                    train_config=train_config, examples=data.test,
                    class_gaussians=fit_class_gaussians(result.model, data.train.images, data.train.labels,
                                                        len(DATASETS[args.dataset].class_names)))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    originals = data.test.images[:32]
    images = torch.cat([sample_prior(result.model, 32, generator=generator),
                        originals.view(-1, 1, 28, 28), reconstruct(result.model, originals)])
    save_grid(images, out / "samples.png", nrow=16)
    print(f"val neg-ELBO {final['val_neg_elbo']:.2f} nats, test neg-ELBO {test['neg_elbo']:.2f} nats "
          f"(recon {test['recon']:.2f} + KL {test['kl']:.2f}); wrote {out}/checkpoint and {out}/samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
