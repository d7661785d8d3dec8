"""Where each strategy's name goes on the Pareto plot: near its own point, clear of every other
label, point, error bar, front segment and the legend, and inside the axes.

Greedy over candidate spots, like adjustText but deterministic. Geometry only: `plots` draws.
The interactive (plotly) plot uses the same placer on `pixel_axes`, a matplotlib twin of its
plot area at 1 pt = 1 px, and draws only the names that fit (`Spot.drawn`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.transforms import Bbox

# Label spots tried around each point: 10 directions (beside, above/below, diagonal) x 4
# distances in points; far ones get a leader line. 42 pt is about the width of "decoder_2_3_4"
# at 8.5 pt, enough to step out of a cluster of points.
_DIRECTIONS = [(sx, sy) for sy in (0.4, -0.4) for sx in (1, -1)] + [(0, 1), (0, -1)]
_DIRECTIONS += [(sx, sy) for sy in (1, -1) for sx in (1, -1)]
_DISTANCES = (6, 16, 28, 42)
LABEL_SIZE = 8.5
LEADER_MIN_PT = 10  # a label further than this from its point gets a line to it
# A plotly annotation's box: the text's width + 1 px `borderpad` each side, and 1.3 x the font
# size (plotly.js's line spacing) + 2 px high. Checked against Chromium's boxes for 11 px names.
PLOTLY_BORDERPAD_PX, PLOTLY_LINE_SPACING = 1, 1.3


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


class Spot(NamedTuple):
    index: int  # row of `points`
    text: str
    offset: tuple[float, float]  # (dx, dy) in points from the point, up and right positive
    box: Bbox  # display space, as measured with matplotlib's font
    drawn: bool  # False: no clear spot (only with only_clear=True); hover names it instead


def label_spots(
    ax,
    points: pd.DataFrame,
    obstacles: list,
    *,
    fontsize: float = LABEL_SIZE,
    only_clear: bool = False,
    plotly_box: bool = False,
) -> list[Spot]:
    """Each point's label text and its offset in points, front first then by rank.

    A spot costs its overlap with placed labels and `obstacles`, 4x its area outside the axes,
    400 when it is nearer another point than its own, and its distance; the cheapest wins.

    Args:
        ax: the axes, already laid out (its transforms are final).
        points: `plots.plotted` rows (strategy, params, mean, n, optimal, rank).
        obstacles: display-space boxes no label may cover (see `obstacles`).
        fontsize: of the labels, in points.
        only_clear: a label whose cheapest spot overlaps a drawn label, leaves the axes or
            lies nearer another point is not drawn (and later labels need not avoid it).
            Otherwise every label is drawn at its cheapest spot.
        plotly_box: size each label as plotly draws an annotation (padded, its line height)
            rather than as matplotlib draws text.

    Returns:
        One `Spot` per point, in placing order.
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
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        size = (extent.width, extent.height)
        if plotly_box:
            pad = 2 * PLOTLY_BORDERPAD_PX * dpi / 72
            size = (size[0] + pad, PLOTLY_LINE_SPACING * fontsize * dpi / 72 + pad)
        best, best_cost = None, math.inf
        for distance in _DISTANCES:
            for ux, uy in _DIRECTIONS:
                offset = (ux * distance, uy * distance)
                box = _label_box(anchors[i], size, offset, dpi)
                inside = Bbox.intersection(box, frame)
                outside = box.width * box.height - (
                    inside.width * inside.height if inside is not None else 0.0
                )
                crowded = sum(_overlap(box, other) for other in placed)
                cost = crowded + sum(_overlap(box, other) for other in obstacles) + 4 * outside
                own = _distance(box, *anchors[i])
                misread = any(_distance(box, *anchors[j]) < own for j in points.index if j != i)
                if misread:
                    cost += 400  # the label would read as another point's
                cost += distance  # prefer the closest free spot
                if cost < best_cost:
                    best, best_cost = (offset, box, crowded or outside or misread), cost
        offset, box, unclear = best
        drawn = not (only_clear and unclear)
        spots.append(Spot(i, text, offset, box, drawn))
        if drawn:
            placed.append(box)
    return spots


def pixel_axes(size_px: tuple[int, int], margin_px: dict, x_range: tuple, y_range: tuple):
    """A matplotlib axes on which 1 pt = 1 display unit = 1 px of a plotly figure.

    Args:
        size_px: the plotly figure's (width, height).
        margin_px: its margins, plotly's keys l, r, t, b (no automargin: the plot area is fixed).
        x_range: the log-scaled x axis's limits in data units.
        y_range: the y axis's limits (bottom, top); bottom > top for a reversed axis.

    Returns:
        The axes; close its figure (`plt.close(ax.figure)`) when done.
    """
    (width, height), m = size_px, margin_px
    fig = plt.figure(figsize=(width / 72, height / 72), dpi=72)
    area = [m["l"] / width, m["b"] / height]
    area += [(width - m["l"] - m["r"]) / width, (height - m["t"] - m["b"]) / height]
    ax = fig.add_axes(area)
    ax.set_xscale("log")
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    return ax


def pixel_spots(
    points: pd.DataFrame, front: pd.DataFrame, axes_px: dict, fontsize: float
) -> list[tuple[Spot, list | None]]:
    """`label_spots(only_clear=True)` for a plotly figure of fixed pixel geometry.

    Args:
        points, front: `plots.plotted` rows and the front's corners.
        axes_px: `pixel_axes`'s arguments (size_px, margin_px, x_range, y_range).
        fontsize: of the labels, in px.

    Returns:
        (spot, leader) per point: the leader's two ends [(x, y), (x, y)] in data units, from
        6 px off the marker to the label, or None for a near or undrawn label.
    """
    ax = pixel_axes(**axes_px)
    try:
        avoid = obstacles(ax, points, front)
        spots = label_spots(ax, points, avoid, fontsize=fontsize, only_clear=True, plotly_box=True)
        anchors = ax.transData.transform(points[["params", "mean"]].to_numpy(float))
        to_data = ax.transData.inverted().transform
        result = []
        for spot in spots:
            (x, y), (dx, dy), leader = anchors[spot.index], spot.offset, None
            if spot.drawn and max(abs(dx), abs(dy)) > LEADER_MIN_PT:
                step = 6 / math.hypot(dx, dy)
                leader = to_data([(x + dx * step, y + dy * step), (x + dx, y + dy)]).tolist()
            result.append((spot, leader))
        return result
    finally:
        plt.close(ax.figure)


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
