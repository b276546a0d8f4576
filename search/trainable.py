"""The Tune function trainable: an adapter that runs ``vae.train.fit`` for one trial and, from fit's per-round
callback, reports each round to Tune and W&B with the trial's best round as its checkpoint
(``BestRoundCheckpoints``). It resumes from that checkpoint when Tune restarts the trial; a diverged trial
reports once and ends without a retry (divergence is deterministic).

What every trial shares comes as parameters (``tune.with_parameters``, through Ray's object store): the data,
decoded once by the driver, and the search's deadline, by which the trial anneals and stops (vae.train.fit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import ray
import torch
from ray import tune

from search.tracking import TrialTracker, WandbSettings
from search.trial_config import METRIC, TrialConfig
from search.trial_state import BestRoundCheckpoints, load_trial_checkpoint
from vae.data import PackedSplits
from vae.model import count_parameters
from vae.train import NonFiniteLossError, TrainState, fit, pick_device

# For tests: called in each trial after each round's report with the trial's state and its searched values
# (e.g. to make a weight NaN, so that the next round really diverges).
AfterRound = Callable[[TrainState, dict[str, Any]], None]


def train_vae(config: dict[str, Any], data: PackedSplits, deadline: float | None = None,
              after_round: AfterRound | None = None) -> None:
    entered = time.perf_counter()
    if deadline is not None and time.time() >= deadline:
        return  # started after the time budget ran out (Tune stops the rest soon): nothing to train, no report
    trial = TrialConfig.from_tune(config)
    settings = trial.settings
    torch.set_num_threads(settings.threads)
    device = pick_device()
    splits = data.unpack(device)
    state = TrainState.fresh(trial.model, trial.train, device)
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            load_trial_checkpoint(directory, state)
    context = tune.get_context()
    trial_id, parameters = context.get_trial_id(), count_parameters(trial.model)
    tracker = TrialTracker(WandbSettings(**settings.wandb), {**trial.hyper, "parameters": parameters,
                           "max_rounds": settings.max_rounds, "round_images": settings.round_images,
                           "dataset": settings.dataset, "seed": settings.seed},
                           trial_id=trial_id, trial_name=context.get_trial_name())
    fixed = {"setup_s": time.perf_counter() - entered, "parameters": parameters, "device": device.type,
             "node_id": ray.get_runtime_context().get_node_id(), "resumed_from_round": state.round}
    checkpoints = BestRoundCheckpoints(every=settings.checkpoint_every, rungs=settings.rungs,
                                       written_round=state.round, data=splits, train_config=trial.train,
                                       trial_id=trial_id)

    def result(state: TrainState, metrics: dict[str, Any]) -> dict[str, Any]:
        # reported_at: Tune's own timestamp is whole seconds, too coarse to order the reports of trials
        return {**metrics, **fixed, "best_val_neg_elbo": state.best_val_neg_elbo, "best_round": state.best_round,
                "reported_at": time.time()}

    def report(state: TrainState, metrics: dict[str, Any]) -> None:
        row = result(state, metrics)
        tracker.log(row, step=state.round, model=state.model, examples=splits.test)
        if metrics["last_round"]:
            # Close the W&B run before the last report: ASHA stops a trial that reaches max_t at that
            # report, and Tune then ends the actor without returning control to this function.
            tracker.finish(0)
        started = time.perf_counter()
        with checkpoints.for_report(state, last=metrics["last_round"]) as checkpoint:
            tune.report({**row, "checkpoint_write_s": time.perf_counter() - started}, checkpoint=checkpoint)
        if after_round is not None:
            after_round(state, trial.hyper)

    try:
        if state.round >= settings.max_rounds:  # restored from its last round: nothing to train, say where it ended
            tune.report(result(state, state.history[-1]))
            return
        fit(trial.model, trial.train, splits, device=device, state=state, on_round=report, deadline=deadline)
        tracker.finish(0)
    except NonFiniteLossError as exc:
        tune.report({"round": state.round + 1, METRIC: math.nan, "diverged": 1,
                     "error": f"TrialDiverged: loss became non-finite at round {state.round + 1} ({exc}) with "
                     f"latent_width {trial.model.latent_width}, reparam_width {trial.model.reparam_width}, "
                     f"lr {trial.train.lr:.3g}"})  # no checkpoint: the weights are not finite
    finally:
        tracker.finish(1)  # a no-op unless the loop ended early (an error, or Tune stopping the trial)
