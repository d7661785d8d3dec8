"""Where each strategy's name goes on the Pareto plot: near its own point, clear of every other
label, point, error bar, front segment and the legend, and inside the axes.

Greedy over candidate spots, like adjustText but deterministic. Geometry only: `plots` draws.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.transforms import Bbox

# Label spots tried around each point: 10 directions (beside, above/below, diagonal) x 4
# distances in points; far ones get a leader line. 42 pt is about the width of "decoder_2_3_4"
# at 8.5 pt, enough to step out of a cluster of points.
_DIRECTIONS = [(sx, sy) for sy in (0.4, -0.4) for sx in (1, -1)] + [(0, 1), (0, -1)]
_DIRECTIONS += [(sx, sy) for sy in (1, -1) for sx in (1, -1)]
_DISTANCES = (6, 16, 28, 42)
LABEL_SIZE = 8.5


def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _label_box(anchor, size, offset, dpi: float):
    """Display-space box of a label of `size` (w, h px) placed `offset` points from `anchor`."""
    (x, y), (w, h), (dx, dy) = anchor, size, offset
    x, y = x + dx * dpi / 72, y + dy * dpi / 72
    x0 = x if dx > 0 else x - w if dx < 0 else x - w / 2
    y0 = y if dy > 0 else y - h if dy < 0 else y - h / 2
    return Bbox.from_bounds(x0, y0, w, h).expanded(1.06, 1.2)


def _distance(box, x: float, y: float) -> float:
    return math.hypot(max(box.x0 - x, 0, x - box.x1), max(box.y0 - y, 0, y - box.y1))


def label_spots(ax, points: pd.DataFrame, obstacles: list) -> list[tuple[int, str, tuple]]:
    """Each point's label text and its offset in points, front first then by rank.

    A spot costs its overlap with placed labels and `obstacles`, 4x its area outside the axes,
    400 when it is nearer another point than its own, and its distance; the cheapest wins.

    Args:
        ax: the axes, already laid out (its transforms are final).
        points: `plots.plotted` rows (strategy, params, mean, n, optimal, rank).
        obstacles: display-space boxes no label may cover (see `obstacles`).

    Returns:
        (index in `points`, text, (dx, dy)) per point, in placing order.
    """
    fig = ax.figure
    renderer, dpi = fig.canvas.get_renderer(), fig.dpi
    frame = ax.get_window_extent(renderer)
    anchors = ax.transData.transform(points[["params", "mean"]].to_numpy(float))
    placed: list = []
    spots = []
    for i in points.sort_values(["optimal", "rank"], ascending=[False, True]).index:
        point = points.loc[i]
        text = point["strategy"] + (" (n=1)" if point["n"] == 1 else "")
        probe = ax.text(0, 0, text, fontsize=LABEL_SIZE)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        best, best_cost = None, math.inf
        for distance in _DISTANCES:
            for ux, uy in _DIRECTIONS:
                offset = (ux * distance, uy * distance)
                box = _label_box(anchors[i], (extent.width, extent.height), offset, dpi)
                inside = Bbox.intersection(box, frame)
                outside = box.width * box.height - (
                    inside.width * inside.height if inside is not None else 0.0
                )
                cost = sum(_overlap(box, other) for other in placed + obstacles) + 4 * outside
                own = _distance(box, *anchors[i])
                if any(_distance(box, *anchors[j]) < own for j in points.index if j != i):
                    cost += 400  # the label would read as another point's
                cost += distance  # prefer the closest free spot
                if cost < best_cost:
                    best, best_cost = (offset, box), cost
        offset, box = best
        spots.append((i, text, offset))
        placed.append(box)
    return spots


def obstacles(ax, points: pd.DataFrame, front: pd.DataFrame) -> list:
    """Display-space boxes of markers, error bars and the front's segments."""
    to_display = ax.transData.transform
    boxes = []
    for _, p in points.iterrows():
        x, y = to_display((p["params"], p["mean"]))
        boxes.append(Bbox.from_extents(x - 9, y - 9, x + 9, y + 9))
        if not math.isnan(p["low"]):
            (_, y0), (_, y1) = to_display([(p["params"], p["low"]), (p["params"], p["high"])])
            boxes.append(Bbox.from_extents(x - 5, min(y0, y1), x + 5, max(y0, y1)))
    corners = list(zip(front["params"], front["mean"], strict=True))
    for (x0, y0), (x1, y1) in zip(corners, corners[1:], strict=False):
        for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))):  # horizontal, then vertical
            (ax0, ay0), (bx0, by0) = to_display([a, b])
            boxes.append(
                Bbox.from_extents(
                    min(ax0, bx0) - 2, min(ay0, by0) - 2, max(ax0, bx0) + 2, max(ay0, by0) + 2
                )
            )
    return boxes
