"""The Tune function trainable: one trial trains one LinearVAE with vae/ and reports every epoch.

``config`` holds the searched hyperparameters (``latent_width``, ``reparam_width``, ``depth``, ``lr``,
``lr_schedule``, ``kl_warmup_epochs``, ``batch_size``) and, under ``"run"``, the fixed settings of the
experiment (``TrialSettings``). The trial loads its data itself (so nothing large travels through Ray's
object store) and reports every epoch. It keeps its best epoch by validation in memory
(``TrialSnapshot``) and writes it as a Tune checkpoint every ``checkpoint_every`` epochs (the ASHA grace
period: every rung ASHA decides at is a multiple of it) and at the last epoch, when it improved since the
last write; so the trial's checkpoint is its best epoch by validation, and Tune's forced experiment
snapshot (one per checkpoint with ``num_to_keep=1``) happens at most every few epochs. A trial stopped by
the time budget between two writes loses at most that many epochs. It resumes from that checkpoint
(its best epoch) when Tune restarts the trial, and when training diverges reports that once and ends
without a retry (the leaderboard shows it as ERROR with "loss became non-finite ...").
The cosine schedule runs over ``max_epochs``; ASHA may stop a trial before its learning rate has decayed.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import ray
import torch
from ray import tune

from search.config import NanInjection
from search.tracking import TrialTracker, WandbSettings
from search.trial_state import Progress, TrialSnapshot, load_trial_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.data import load_splits
from vae.model import LinearVAE, count_parameters
from vae.train import (
    NonFiniteLossError,
    evaluate,
    kl_weight,
    make_lr_scheduler,
    make_optimizer,
    pick_device,
    seed_everything,
    train_epoch,
)

METRIC = "val_neg_elbo"
BEST_METRIC = "best_val_neg_elbo"  # what a trial's checkpoint holds: its best epoch so far by METRIC
MODE = "min"
HYPERPARAMETERS = ("latent_width", "reparam_width", "depth", "lr", "lr_schedule", "kl_warmup_epochs", "batch_size")
# What a trial config lacks when it comes from an experiment started before these were searched.
HYPERPARAMETER_DEFAULTS = {"depth": 1, "lr_schedule": "constant", "kl_warmup_epochs": 0}


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of a trial's config, with the defaults of parameters older experiments lacked."""
    return {k: config.get(k, HYPERPARAMETER_DEFAULTS.get(k)) for k in HYPERPARAMETERS}


class TrialDiverged(RuntimeError):
    """The trial's loss became NaN or infinite: the trial fails with this reason, the search goes on."""


def _report_divergence(epoch: int, model_config: ModelConfig, train_config: TrainConfig, exc: Exception) -> None:
    """Report a diverged trial's last result and let the trainable return: divergence is deterministic, so
    the trial must not be retried, and FailureConfig retries every trial that raises (it cannot tell a
    transient failure from this one). The result marks the trial ``diverged`` with its reason (the
    leaderboard shows it as ERROR); its metric is NaN, which Optuna records as a failed trial and ASHA
    ignores. No checkpoint is attached: the weights are not finite."""
    reason = TrialDiverged(
        f"loss became non-finite at epoch {epoch} ({exc}) with latent_width {model_config.latent_width}, "
        f"reparam_width {model_config.reparam_width}, lr {train_config.lr:.3g}")
    tune.report({"epoch": epoch, METRIC: math.nan, "diverged": 1, "error": f"TrialDiverged: {reason}"})


@dataclass(frozen=True)
class TrialSettings:
    """The experiment-wide part of a trial's config (the same for every trial)."""

    max_epochs: int
    dataset: str
    data_dir: str | None
    seed: int
    threads: int
    wandb: dict[str, str]
    inject_nan: dict[str, Any] | None = None
    checkpoint_every: int = 1  # epochs between checkpoint writes of the best epoch (and at the last epoch)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSettings:
        return cls(**data)


def train_vae(config: dict[str, Any]) -> None:
    entered = time.perf_counter()
    settings = TrialSettings.from_dict(config["run"])
    torch.set_num_threads(settings.threads)
    hyper = hyperparameters(config)
    model_config = ModelConfig(int(hyper["latent_width"]), int(hyper["reparam_width"]), depth=int(hyper["depth"]))
    train_config = TrainConfig(lr=float(hyper["lr"]), batch_size=int(hyper["batch_size"]),
                               epochs=settings.max_epochs, seed=settings.seed,
                               lr_schedule=str(hyper["lr_schedule"]), warmup_epochs=int(hyper["kl_warmup_epochs"]))
    device = pick_device()
    data = load_splits(settings.dataset, settings.data_dir, seed=settings.seed, device=device)

    seed_everything(settings.seed)
    model = LinearVAE(model_config).to(device)
    optimizer = make_optimizer(model, train_config.lr)
    scheduler = make_lr_scheduler(optimizer, train_config)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    progress = Progress()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = load_trial_checkpoint(directory, model, optimizer, generator, scheduler)

    context = tune.get_context()
    trial_id = context.get_trial_id()
    tracker = TrialTracker(
        WandbSettings(**settings.wandb),
        {**hyper, "parameters": count_parameters(model_config), "max_epochs": settings.max_epochs,
         "dataset": settings.dataset, "seed": settings.seed},
        trial_id=trial_id, trial_name=context.get_trial_name(),
    )
    inject = NanInjection(**settings.inject_nan) if settings.inject_nan else None
    node_id = ray.get_runtime_context().get_node_id()
    setup_s = time.perf_counter() - entered  # data loading, model, W&B run: what a trial costs before training
    best: TrialSnapshot | None = None
    written_epoch = progress.epoch  # a resumed trial starts from its checkpoint, its best epoch so far
    try:
        for epoch in range(progress.epoch + 1, settings.max_epochs + 1):
            if inject is not None and inject.applies(model_config.latent_width, epoch):
                with torch.no_grad():
                    model.hidden_to_output.bias.fill_(math.nan)
            lr, beta = optimizer.param_groups[0]["lr"], kl_weight(epoch, train_config)
            try:
                train = train_epoch(model, optimizer, data.train.images, batch_size=train_config.batch_size,
                                    beta=beta, generator=generator)
            except NonFiniteLossError as exc:
                _report_divergence(epoch, model_config, train_config, exc)
                return  # the finally below closes the W&B run as failed
            scheduler.step()
            eval_started = time.perf_counter()
            val = evaluate(model, data.val.images, seed=settings.seed)
            eval_s = time.perf_counter() - eval_started
            metrics = {
                "epoch": epoch,
                "reported_at": time.time(),  # Tune's own timestamp is whole seconds: too coarse to order reports
                "val_neg_elbo": val["neg_elbo"], "val_recon": val["recon"], "val_kl": val["kl"],
                "active_units": val["active_units"],
                "train_neg_elbo": train["neg_elbo"], "train_recon": train["recon"], "train_kl": train["kl"],
                "samples_per_s": train["samples_per_s"], "epoch_time_s": train["time_s"],
                "eval_time_s": eval_s, "setup_s": setup_s, "lr": lr, "kl_weight": beta,
                "parameters": count_parameters(model_config), "device": device.type, "node_id": node_id,
            }
            improved = val["neg_elbo"] < progress.best_val_neg_elbo
            progress.epoch = epoch
            progress.history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            metrics["best_val_neg_elbo"] = progress.best_val_neg_elbo
            metrics["best_epoch"] = progress.best_epoch
            tracker.log(metrics, step=epoch, model=model, examples=data.test)
            if epoch == settings.max_epochs:
                # Close the W&B run before the last report: ASHA stops a trial that reaches max_t at that
                # report, and Tune then ends the actor without returning control to this function.
                tracker.finish(0)
            started = time.perf_counter()
            if improved:
                best = TrialSnapshot.take(model, optimizer, generator, progress, scheduler)
            due = epoch % settings.checkpoint_every == 0 or epoch == settings.max_epochs
            if not (due and best is not None and best.progress.epoch > written_epoch):
                metrics["checkpoint_write_s"] = time.perf_counter() - started
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory(prefix="vaesearch-ckpt-") as directory:
                best.save(directory, dataset=settings.dataset, train_config=train_config,
                          extra={"trial_id": trial_id, "epoch": best.progress.epoch})
                written_epoch = best.progress.epoch
                metrics["checkpoint_write_s"] = time.perf_counter() - started
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        tracker.finish(0)
    finally:
        tracker.finish(1)  # reached only when the loop ended early (an error, or Tune stopping the trial)
