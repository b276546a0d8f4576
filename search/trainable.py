"""The Tune function trainable: an adapter that runs ``vae.train.fit`` for one trial and, from fit's
per-epoch callback, reports each epoch to Tune and W&B with the trial's best epoch as its checkpoint
(``BestEpochCheckpoints``). It resumes from that checkpoint when Tune restarts the trial; a diverged trial
reports once and ends without a retry (divergence is deterministic). The cosine schedule spans max_epochs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import ray
import torch
from ray import tune

from search.fault_hook import load_fault_hook
from search.tracking import TrialTracker, WandbSettings
from search.trial_config import METRIC, TrialConfig
from search.trial_state import BestEpochCheckpoints, load_trial_checkpoint
from vae.data import load_splits
from vae.model import count_parameters
from vae.train import NonFiniteLossError, TrainState, fit, pick_device


def train_vae(config: dict[str, Any]) -> None:
    entered = time.perf_counter()
    trial = TrialConfig.from_tune(config)
    settings = trial.settings
    torch.set_num_threads(settings.threads)
    device = pick_device()
    data = load_splits(settings.dataset, settings.data_dir, seed=settings.seed, device=device)
    state = TrainState.fresh(trial.model, trial.train, device)
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            load_trial_checkpoint(directory, state)
    context = tune.get_context()
    trial_id, parameters = context.get_trial_id(), count_parameters(trial.model)
    tracker = TrialTracker(WandbSettings(**settings.wandb), {**trial.hyper, "parameters": parameters,
                           "max_epochs": settings.max_epochs, "dataset": settings.dataset, "seed": settings.seed},
                           trial_id=trial_id, trial_name=context.get_trial_name())
    fixed = {"setup_s": time.perf_counter() - entered, "parameters": parameters, "device": device.type,
             "node_id": ray.get_runtime_context().get_node_id(), "resumed_from_epoch": state.epoch}
    checkpoints = BestEpochCheckpoints(every=settings.checkpoint_every, last_epoch=settings.max_epochs,
                                       written_epoch=state.epoch, dataset=settings.dataset, train_config=trial.train,
                                       trial_id=trial_id)
    fault_hook = load_fault_hook()

    def result(state: TrainState, metrics: dict[str, Any]) -> dict[str, Any]:
        # reported_at: Tune's own timestamp is whole seconds, too coarse to order the reports of trials
        return {**metrics, **fixed, "best_val_neg_elbo": state.best_val_neg_elbo, "best_epoch": state.best_epoch,
                "reported_at": time.time()}

    def report(state: TrainState, metrics: dict[str, Any]) -> None:
        row = result(state, metrics)
        tracker.log(row, step=state.epoch, model=state.model, examples=data.test)
        if state.epoch == settings.max_epochs:
            # Close the W&B run before the last report: ASHA stops a trial that reaches max_t at that
            # report, and Tune then ends the actor without returning control to this function.
            tracker.finish(0)
        started = time.perf_counter()
        with checkpoints.for_report(state) as checkpoint:
            tune.report({**row, "checkpoint_write_s": time.perf_counter() - started}, checkpoint=checkpoint)
        if fault_hook is not None:
            fault_hook(state, trial.hyper)

    try:
        if state.epoch >= settings.max_epochs:  # restored from its last epoch: nothing to train, say where it ended
            tune.report(result(state, state.history[-1]))
            return
        fit(trial.model, trial.train, data, device=device, state=state, on_epoch=report)
        tracker.finish(0)
    except NonFiniteLossError as exc:
        tune.report({"epoch": state.epoch + 1, METRIC: math.nan, "diverged": 1,
                     "error": f"TrialDiverged: loss became non-finite at epoch {state.epoch + 1} ({exc}) with "
                     f"latent_width {trial.model.latent_width}, reparam_width {trial.model.reparam_width}, "
                     f"lr {trial.train.lr:.3g}"})  # no checkpoint: the weights are not finite
    finally:
        tracker.finish(1)  # a no-op unless the loop ended early (an error, or Tune stopping the trial)
