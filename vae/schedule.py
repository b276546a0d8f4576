"""The learning-rate schedule: cosine decays that end where the training stops.

A cosine schedule planned over a horizon the run never reaches leaves the model un-annealed when it stops. A
search's time budget can end a trial at any point, so ``fit_to`` re-plans the current segment to end sooner (a
deadline that comes before the planned end), decaying from the learning rate of that moment; it can also get
the planned end back when the rounds turn out faster. The plan may hold several segments (``ends``), each
decaying to near zero and the next restarting at ``restart`` times the previous peak; a search uses one (ending
segments at ASHA's rungs was measured and lost at every rung: benchmarks/README.md).

``CosineSegments`` is the multiplier of ``torch.optim.lr_scheduler.LambdaLR``, stepped once per round; as a
callable object, its state (the segments) is part of the scheduler's ``state_dict``, so a resumed run
continues the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


class CosineSegments:
    """lr multiplier after ``step`` completed rounds: within a segment ``[start, end)`` of peak ``p``,
    ``p * (1 + cos(pi * (step - start) / (end - start))) / 2``; past the last segment, that segment's
    last value. ``planned`` holds the segments as first planned, ``segments`` the plan now (``fit_to``)."""

    def __init__(self, ends: Sequence[int], restart: float = 1.0) -> None:
        ends = sorted({int(e) for e in ends if int(e) > 0})
        if not ends:
            raise ValueError("a cosine schedule needs at least one segment end > 0")
        if not 0 < restart <= 1:
            raise ValueError(f"restart must be in (0, 1], got {restart!r}")
        starts = [0, *ends[:-1]]
        self.planned: list[list[float]] = [[s, e, restart**k] for k, (s, e) in enumerate(zip(starts, ends,
                                                                                             strict=True))]
        self.segments: list[list[float]] = [list(segment) for segment in self.planned]

    @property
    def end(self) -> int:
        """The round where the plan ends now (its last segment's end)."""
        return int(self.segments[-1][1])

    def __call__(self, step: int) -> float:
        for start, end, peak in self.segments:
            if step < end:
                return peak * (1 + math.cos(math.pi * max(step - start, 0) / (end - start))) / 2
        start, end, peak = self.segments[-1]
        return peak * (1 + math.cos(math.pi * (end - 1 - start) / (end - start))) / 2

    def fit_to(self, step: int, end: int) -> None:
        """Re-plan from round ``step`` on: the current segment decays from the current multiplier to near
        zero by ``end`` when that is sooner than its planned end (and the plan then ends there), else it
        keeps (or gets back) its planned end and the planned segments after it."""
        planned_end = next((int(e) for _, e, _ in self.planned if step < e), int(self.planned[-1][1]))
        target = min(max(int(end), step + 1), planned_end)
        current_end = next((int(e) for _, e, _ in self.segments if step < e), self.end)
        if target == current_end:
            return
        multiplier = self(step)
        kept = [[s, min(e, step), p] for s, e, p in self.segments if s < step]
        later = [list(segment) for segment in self.planned if segment[0] >= planned_end] if target == planned_end \
            else []
        self.segments = [*kept, [step, target, multiplier], *later]
