"""The interactive Pareto plot (plotly) for report.html and W&B: the PNG's plot, with hover.

Names are placed by the PNG's placer (`labels.pixel_spots`, on a matplotlib twin of this
figure's plot area) and drawn only where they fit; every point's hover names it, so a name left
out in a dense cluster (2-4 M trainable parameters for the paper's strategies) is one hover
away. The figure has a fixed size for that reason: a responsive plot rescales the data but not
the text, so names placed for one width would collide at another.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from search.report.labels import pixel_spots
from search.report.plots import (
    DOMINATED_COLOR,
    FRONT_COLOR,
    TIED_COLOR,
    TIED_LABEL,
    axis_label,
    front_steps,
    limits,
    plotted,
)
from search.shared.metrics import Metric

# 900 px fits the page's 1200 px column; the margins hold tick labels and axis titles, the top
# one the legend (no automargin: the plot area the names were placed in is the one drawn).
HTML_SIZE_PX = (900, 480)
HTML_MARGIN_PX = {"l": 80, "r": 20, "t": 50, "b": 80}
HTML_LABEL_PX = 11
MARKER_PX = 10  # diameter
# plotly's "closest" hover counts every marker under the cursor as equally close (its distance
# is max(d - radius, 1 - 3 / radius) px), so where markers overlap the first one listed wins.
# Each hover therefore also names the strategies whose markers could share a cursor position
# with it: centres nearer than two radii plus that 0.4 px floor (10.8 px, rounded up to 11).
SHARED_HOVER_PX = 11
# Names are measured in matplotlib's DejaVu Sans; a browser without it falls back to Arial or
# Helvetica, both narrower, so a measured box still holds the drawn name.
HTML_LABEL_FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"


def plotly_pareto(table: pd.DataFrame, metric: Metric):
    """Metric (mean, 95% interval bars) against trainable parameters (log x), front as a step
    line, a ring around the best and those not separated from it (`stats.SEPARATION_RULE`);
    hover shows each strategy's name, parameters, mean, interval, n and the verdict."""
    points = plotted(table, metric)
    fig = go.Figure()
    front = front_steps(points)
    fig.add_trace(
        go.Scatter(
            x=front["params"],
            y=front["mean"],
            mode="lines",
            line={"shape": "hv", "dash": "dash", "color": FRONT_COLOR},
            name="Pareto front (on means)",
            hoverinfo="skip",
        )
    )
    x_range, (y_low, y_high) = limits(points) if len(points) else ((1, 10), (0, 1))
    y_range = (y_low, y_high) if metric.higher_is_better else (y_high, y_low)  # better is up
    if len(points):
        _plotly_labels(fig, points, front, x_range, y_range)  # leader lines under the markers
    neighbours = _hover_neighbours(points, x_range, y_range)
    for optimal, group in points.groupby("optimal"):
        ci = [
            "n=1, no interval" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"
            for lo, hi in zip(group["low"], group["high"], strict=True)
        ]
        also = [
            f"<br>also under the cursor: {', '.join(neighbours[i])}" if neighbours[i] else ""
            for i in group.index
        ]
        fig.add_trace(
            go.Scatter(
                x=group["params"],
                y=group["mean"],
                mode="markers",
                text=group["strategy"],
                customdata=np.column_stack([group["n"], ci, also, group["verdict"]]),
                hovertemplate="<b>%{text}</b><br>trainable %{x:,}<br>mean %{y:.3f}"
                "<br>95% interval %{customdata[1]}<br>n=%{customdata[0]}"
                "<br>vs best: %{customdata[3]}%{customdata[2]}<extra></extra>",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (group["high"] - group["mean"]).fillna(0),
                    "arrayminus": (group["mean"] - group["low"]).fillna(0),
                },
                marker={
                    "size": MARKER_PX,
                    "color": FRONT_COLOR if optimal else DOMINATED_COLOR,
                    # hollow = one seed, no interval (as in the PNG)
                    "symbol": ["circle-open" if n == 1 else "circle" for n in group["n"]],
                },
                name="Pareto-optimal" if optimal else "dominated",
            )
        )
    tied = points[points["verdict"].isin(["best", "not separated"])]
    if len(tied):
        fig.add_trace(
            go.Scatter(
                x=tied["params"],
                y=tied["mean"],
                mode="markers",
                marker={
                    "size": MARKER_PX + 10,
                    "symbol": "circle-open",
                    "color": TIED_COLOR,
                    "line": {"width": 2},
                },
                name=TIED_LABEL,
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(
        type="log",
        range=[math.log10(x) for x in x_range],  # plotly takes a log axis's range as log10
        title="Trainable parameters (log scale; fewer is better)",
        automargin=False,
    )
    fig.update_yaxes(title=axis_label(metric), range=list(y_range), automargin=False)
    width, height = HTML_SIZE_PX
    fig.update_layout(
        template="plotly_white",
        width=width,
        height=height,
        margin={**HTML_MARGIN_PX, "autoexpand": False},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        hovermode="closest",
    )
    return fig


def _hover_neighbours(points: pd.DataFrame, x_range, y_range) -> dict[int, list[str]]:
    """Per point, the strategies whose markers lie within SHARED_HOVER_PX of it on screen."""
    (width, height), m = HTML_SIZE_PX, HTML_MARGIN_PX
    x_log = [math.log10(x) for x in x_range]
    x_px = (np.log10(points["params"]) - x_log[0]) / (x_log[1] - x_log[0])
    y_px = (points["mean"] - y_range[0]) / (y_range[1] - y_range[0])
    xy = np.column_stack([x_px * (width - m["l"] - m["r"]), y_px * (height - m["t"] - m["b"])])
    near = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) < SHARED_HOVER_PX
    names = points["strategy"].tolist()
    return {
        i: [names[j] for j in range(len(points)) if near[i, j] and j != i]
        for i in range(len(points))
    }


def _plotly_labels(fig, points: pd.DataFrame, front: pd.DataFrame, x_range, y_range) -> None:
    """Annotations (with leader lines) for the names that fit; a note when some do not."""
    axes_px = {
        "size_px": HTML_SIZE_PX,
        "margin_px": HTML_MARGIN_PX,
        "x_range": x_range,
        "y_range": y_range,
    }
    spots = pixel_spots(points, front, axes_px, HTML_LABEL_PX)
    for spot, leader in spots:
        if not spot.drawn:
            continue
        point, (dx, dy) = points.loc[spot.index], spot.offset
        fig.add_annotation(
            x=math.log10(point["params"]),  # annotations on a log axis take log10 too
            y=point["mean"],
            text=spot.text,
            showarrow=False,
            xshift=dx,
            yshift=dy,
            xanchor="left" if dx > 0 else "right" if dx < 0 else "center",
            yanchor="bottom" if dy > 0 else "top" if dy < 0 else "middle",
            font={
                "size": HTML_LABEL_PX,
                "family": HTML_LABEL_FONT,
                "color": FRONT_COLOR if point["optimal"] else "#333333",
            },
        )
        if leader is not None:
            fig.add_trace(
                go.Scatter(
                    x=[leader[0][0], leader[1][0]],
                    y=[leader[0][1], leader[1][1]],
                    mode="lines",
                    line={"color": "#999999", "width": 0.8},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
    hidden = [spot.text for spot, _ in spots if not spot.drawn]
    if hidden:
        fig.add_annotation(  # below the x axis's title: the legend and modebar hold the top
            x=0,
            y=0,
            xref="paper",
            yref="paper",
            xanchor="left",
            yanchor="top",
            yshift=-58,
            showarrow=False,
            text=f"{len(hidden)} name(s) hidden to avoid overlaps: hover a point",
            font={"size": HTML_LABEL_PX, "color": "#666666"},
        )
