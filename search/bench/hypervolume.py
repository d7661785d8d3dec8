"""The 2-D hypervolume of a validation front (Dice up, log10 trainable parameters down), and
how it grows with the training epochs a search spends.

The hypervolume is the area the front dominates inside the reference box: every point with
Dice above `REFERENCE.dice` and log10 parameters below `REFERENCE.log_params` covers the
rectangle between itself and the reference point; the union's area, in Dice x decades of
trainable parameters, is the hypervolume (sort by parameters, sum the strips).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reference:
    dice: float
    log_params: float

    def __str__(self) -> str:
        return f"(val Dice {self.dice:g}, log10 trainable parameters {self.log_params:g})"


# Dice 0.5: a segmentation worse than that measures no head (the paper's worst strategy reached
# 65% test Dice at 64 px), so it adds nothing. log10 parameters 7.5 (31.6M): above every
# configuration's count (the largest, a fully trained ResNet-18 U-Net, has 14.3M).
REFERENCE = Reference(dice=0.5, log_params=7.5)


def hypervolume(
    dice: Iterable[float], log_params: Iterable[float], reference: Reference = REFERENCE
) -> float:
    """The area dominated by the points (maximise Dice, minimise log10 parameters) inside the
    reference box; 0 for no point inside it."""
    points = sorted(
        (lp, d)
        for d, lp in zip(dice, log_params, strict=True)
        if np.isfinite(d) and d > reference.dice and lp < reference.log_params
    )
    area, best = 0.0, reference.dice
    for lp, d in points:  # fewest parameters first: each better Dice adds a strip
        if d > best:
            area += (reference.log_params - lp) * (d - best)
            best = d
    return area


@dataclass(frozen=True)
class Event:
    """A trial as a search spent it: the epochs it trained, its front coordinates, and what
    it trained (trials of one key - a strategy's seeds - count once, at their mean Dice)."""

    epochs: int
    dice: float
    log_params: float
    key: object = None


def curve(
    events: Sequence[Event], budgets: Sequence[float], reference: Reference = REFERENCE
) -> np.ndarray:
    """The hypervolume after each budget: of the trials that had ended when that many epochs
    were spent (events in the order they ended; a trial counts once its epochs are all spent;
    trials of one key count once, at their mean Dice)."""
    spent = np.cumsum([e.epochs for e in events]) if events else np.array([])
    out = []
    for budget in budgets:
        points: dict[object, list] = {}
        for i, (event, s) in enumerate(zip(events, spent, strict=True)):
            if s <= budget:
                key = i if event.key is None else event.key
                points.setdefault(key, [event.log_params, []])[1].append(event.dice)
        dice = [float(np.mean(d)) for _, d in points.values()]
        out.append(hypervolume(dice, [lp for lp, _ in points.values()], reference))
    return np.array(out, dtype=float)


def epochs_spent(events: Sequence[Event]) -> int:
    return int(sum(e.epochs for e in events))
