"""What a configuration the table of real trials lacks would have scored: a surrogate fitted on
the table (numpy only), one validation Dice per epoch.

Features of a configuration: its encoder (one-hot), one flag per part (`enc0-4`, `dec0-4`,
`head`), the BatchNorm mode, log10 of the learning rate and of its mean over the trial's epochs
(the schedule applied), the schedule (one-hot), and log10 trainable parameters. Two models:
`knn` (the k nearest table rows in z-scored features, inverse-distance weighted) and `ridge`
(ridge regression on the z-scored features plus the squares of the two learning-rate features
and the parameter count). `auto` takes the one with the lower leave-one-out RMSE averaged over
the epochs; `cross_validate` reports every model's error per epoch, beside predicting the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from search.bench.table import FLAGS, dice_columns
from trainables.core.recipe import SCHEDULES

MODELS = ("knn", "ridge")
K = 5
RIDGE_ALPHA = 1.0
FITTED = ("explore", "grid")


def lr_multiplier(schedule: str, gamma, step_size, lr_min_ratio, epochs: int) -> float:
    """The mean of the learning rate's multiplier over `epochs` epochs (epoch 1 at 1)."""
    e = np.arange(epochs)
    if schedule == "exponential":
        return float(np.mean(float(gamma) ** e))
    if schedule == "step":
        return float(np.mean(float(gamma) ** (e // max(int(step_size), 1))))
    if schedule == "cosine":
        floor = float(lr_min_ratio)
        return float(np.mean(floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * e / epochs))))
    return 1.0


def features(rows: pd.DataFrame, encoders: list[str], epochs: int) -> np.ndarray:
    """One feature row per configuration (table rows or replayed proposals as columns)."""
    out = []
    for row in rows.to_dict("records"):
        schedule = row["lr_schedule"]
        lr = float(row["lr"])
        lr_min = row.get("lr_min")
        ratio = 0.0 if lr_min is None or pd.isna(lr_min) else float(lr_min) / lr
        mult = lr_multiplier(
            schedule, _value(row, "lr_gamma", 1.0), _value(row, "lr_step_size", 1), ratio, epochs
        )
        out.append(
            [float(row["encoder"] == e) for e in encoders]
            + [float(row[flag]) for flag in FLAGS]
            + [float(row["bn"] == "update")]
            + [np.log10(lr), np.log10(lr * mult)]
            + [float(schedule == s) for s in SCHEDULES]
            + [np.log10(max(float(row["trainable_params"]), 1.0))]
        )
    return np.asarray(out, dtype=float)


def _value(row: dict, key: str, default):
    value = row.get(key)
    return default if value is None or pd.isna(value) else value


# Columns of `features` the ridge model also squares: both learning rates and the parameters.
_SQUARED = (-3 - len(SCHEDULES), -2 - len(SCHEDULES), -1)


@dataclass
class Surrogate:
    """A fitted model: `predict(X)` is the validation Dice per epoch (clipped to [0, 1])."""

    kind: str
    X: np.ndarray
    Y: np.ndarray
    mean: np.ndarray = field(init=False)
    scale: np.ndarray = field(init=False)
    coef: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise ValueError(f"surrogate: unknown model {self.kind!r}; valid: {list(MODELS)}")
        design = self._design(self.X, fit=True)
        if self.kind == "ridge":
            y_mean = self.Y.mean(axis=0)
            gram = design.T @ design + RIDGE_ALPHA * np.eye(design.shape[1])
            self.coef = np.linalg.solve(gram, design.T @ (self.Y - y_mean))
            self.intercept = y_mean
        self.design = design

    def _design(self, X: np.ndarray, fit: bool = False) -> np.ndarray:
        if self.kind == "ridge":
            X = np.hstack([X, X[:, list(_SQUARED)] ** 2])
        if fit:
            self.mean = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale = np.where(scale > 0, scale, 1.0)
        return (X - self.mean) / self.scale

    def predict(self, X: np.ndarray) -> np.ndarray:
        design = self._design(np.atleast_2d(X))
        if self.kind == "ridge":
            out = design @ self.coef + self.intercept
        else:
            dist = np.sqrt(((design[:, None, :] - self.design[None, :, :]) ** 2).sum(axis=2))
            k = min(K, len(self.design))
            nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
            d = np.take_along_axis(dist, nearest, axis=1)
            w = 1.0 / (d + 1e-6)
            out = (w[:, :, None] * self.Y[nearest]).sum(axis=1) / w.sum(axis=1, keepdims=True)
        return np.clip(out, 0.0, 1.0)


def training_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a surrogate learns from: pretrained configurations trained every epoch, of the
    table's own searches (`explore` and `grid` rows; a check run's are never fitted)."""
    cols = dice_columns(table)
    fitted = table["source"].isin(FITTED) & table["pretrained"].astype(bool)
    full = table[table[cols].notna().all(axis=1) & fitted]
    return full.reset_index(drop=True)


def fit(table: pd.DataFrame, kind: str, encoders: list[str]) -> Surrogate:
    rows = training_rows(table)
    if len(rows) < 2:
        raise SystemExit(f"surrogate: {len(rows)} complete table rows; it needs at least 2")
    epochs = len(dice_columns(table))
    return Surrogate(kind, features(rows, encoders, epochs), rows[dice_columns(table)].to_numpy())


def cross_validate(table: pd.DataFrame, encoders: list[str], folds: int = 0) -> pd.DataFrame:
    """Every model's (and predicting the mean's) error per epoch: RMSE and MAE of validation
    Dice, k-fold (`folds`; 0 = leave-one-out) over the training rows, folds by a fixed shuffle."""
    rows = training_rows(table)
    cols = dice_columns(table)
    X, Y = features(rows, encoders, len(cols)), rows[cols].to_numpy()
    n = len(rows)
    if n < 3:
        raise SystemExit(f"surrogate: {n} complete table rows; cross-validation needs 3")
    k = n if folds <= 0 else min(folds, n)
    fold = np.random.default_rng(0).permutation(n) % k
    out = []
    for kind in (*MODELS, "mean"):
        pred = np.zeros_like(Y)
        for f in range(k):
            test, train = fold == f, fold != f
            if kind == "mean":
                pred[test] = Y[train].mean(axis=0)
            else:
                pred[test] = Surrogate(kind, X[train], Y[train]).predict(X[test])
        err = pred - Y
        for e, col in enumerate(cols):
            out.append(
                {
                    "model": kind,
                    "epoch": int(col.removeprefix("dice_e")),
                    "rmse": float(np.sqrt(np.mean(err[:, e] ** 2))),
                    "mae": float(np.mean(np.abs(err[:, e]))),
                    # Leave-one-out means are anti-ranked by construction: not shown.
                    "rank_corr": np.nan if kind == "mean" else _spearman(pred[:, e], Y[:, e]),
                    "rows": n,
                    "folds": k,
                }
            )
    return pd.DataFrame(out)


def best_model(cv: pd.DataFrame) -> str:
    """The model with the lowest RMSE averaged over the epochs."""
    means = cv[cv["model"].isin(MODELS)].groupby("model")["rmse"].mean()
    return str(means.idxmin())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def epoch_agreement(table: pd.DataFrame) -> dict[int, float]:
    """How well each epoch's validation Dice ranks the configurations as the last epoch does
    (Spearman over the rows trained every epoch): what a shorter trial or an earlier ASHA
    rung would keep of the ranking."""
    rows = training_rows(table)
    cols = dice_columns(table)
    last = rows[cols[-1]].to_numpy()
    return {int(c.removeprefix("dice_e")): _spearman(rows[c].to_numpy(), last) for c in cols}
