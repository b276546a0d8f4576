from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd

from search.export import ERROR, pareto_front, trial_epoch_curve


def _row(trial_id, parameters, loss, status="TERMINATED"):
    return {"trial_id": trial_id, "parameters": parameters, "best_val_neg_elbo": loss, "status": status}


def test_pareto_front_keeps_only_undominated_trials_smallest_first():
    rows = [_row("big-best", 900, 100.0), _row("small", 100, 130.0), _row("mid", 400, 110.0),
            _row("mid-worse", 500, 120.0), _row("tiny-bad", 50, 200.0), _row("failed", 10, None, ERROR)]
    assert [r["trial_id"] for r in pareto_front(rows)] == ["tiny-bad", "small", "mid", "big-best"]


def test_curve_counts_trial_epochs_in_report_order_and_keeps_the_running_best():
    a = SimpleNamespace(metrics_dataframe=pd.DataFrame({"timestamp": [1, 4, 6], "val_neg_elbo": [150.0, 120.0, 119.0]}))
    b = SimpleNamespace(metrics_dataframe=pd.DataFrame({"timestamp": [2, 3], "val_neg_elbo": [130.0, math.nan]}))
    never = SimpleNamespace(metrics_dataframe=None)
    assert trial_epoch_curve([a, b, never]) == [(1, 150.0), (2, 130.0), (3, 130.0), (4, 120.0), (5, 119.0)]


def test_curve_orders_reports_within_one_second_by_the_float_clock():
    # Tune's timestamp is whole seconds: both trials report in second 7, in the opposite order.
    a = SimpleNamespace(metrics_dataframe=pd.DataFrame(
        {"timestamp": [7, 7], "reported_at": [7.9, 7.95], "val_neg_elbo": [140.0, 110.0]}))
    b = SimpleNamespace(metrics_dataframe=pd.DataFrame(
        {"timestamp": [7], "reported_at": [7.1], "val_neg_elbo": [150.0]}))
    assert trial_epoch_curve([a, b]) == [(1, 150.0), (2, 140.0), (3, 110.0)]
