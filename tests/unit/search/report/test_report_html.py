"""report.html: notes rendered from Markdown, and the interactive Pareto plot's names and hover.

The plot tests use the 8 paper strategies' trainable parameter counts. Five of them lie between
2.2 M and 4.4 M (encoder, decoder_0, decoder_0_1, decoder_0_1_2, decoder): about 0.3 decades, so
~55 px of the plot's 800 px width, where names drawn by plotly at "top center" overlapped.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, PAPER_TRAINABLE

from search.report import interactive
from search.report import stats as report_stats
from search.report.__main__ import main as report_main
from search.report.labels import pixel_spots
from search.report.page import Bullets, Page, Paragraph, Section, inline_html
from search.report.plots import front_steps, limits, plotted
from search.shared.metrics import Metric, get_metric

EXP = DATA / "report" / "exp_small"
PAPER_PARAMS = PAPER_TRAINABLE
# Test Dice like the paper's: the cluster's means within half a point of each other.
PAPER_DICE = {
    "baseline": 0.960,
    "decoder": 0.972,
    "encoder": 0.955,
    "decoder_0": 0.969,
    "decoder_0_1": 0.971,
    "decoder_0_1_2": 0.9715,
    "decoder_2_3_4": 0.965,
    "decoder_4": 0.930,
}
# Six more strategies in the cluster, all 14 at one mean: more names than free spots.
CROWDED_PARAMS = {**PAPER_PARAMS, **{f"variant_{k}": 3_000_000 + 250_000 * k for k in range(6)}}
CROWDED_DICE = {name: 0.97 for name in CROWDED_PARAMS}


def _table(dice: dict[str, float]) -> tuple[pd.DataFrame, Metric]:
    """`strategy_stats` of 4 ok final seeds per strategy around the given means."""
    columns = pd.read_csv(EXP / "trials.csv", nrows=0).columns
    rows = [
        {
            "stage": "final",
            "strategy": name,
            "seed": seed,
            "trial_name": f"{name}__seed{seed}",
            "status": "ok",
            "trainable_params": CROWDED_PARAMS[name],
            "total_params": 6_628_945,
            "test_dice": mean + step / 1000,
        }
        for k, (name, mean) in enumerate(dice.items())
        # seed-to-seed noise of its own per strategy, so no paired difference is constant
        for seed, step in enumerate(np.random.default_rng(k).uniform(-2, 2, 4))
    ]
    metric = get_metric("test_dice")
    trials = pd.DataFrame(rows).reindex(columns=columns)
    return report_stats.strategy_stats(trials, metric), metric


def _spots(table, metric):
    points = plotted(table, metric)
    x_range, y_range = limits(points)
    axes_px = {
        "size_px": interactive.HTML_SIZE_PX,
        "margin_px": interactive.HTML_MARGIN_PX,
        "x_range": x_range,
        "y_range": y_range,
    }
    return pixel_spots(points, front_steps(points), axes_px, interactive.HTML_LABEL_PX)


def _overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _hover_names(fig) -> dict[str, str]:
    """Each hoverable point's strategy -> the part of its hover after the name."""
    names = {}
    for trace in fig.data:
        if trace.mode == "markers" and trace.hoverinfo != "skip":
            assert "%{text}" in trace.hovertemplate
            for name, (_, _, also, _) in zip(trace.text, trace.customdata, strict=True):
                names[name] = also
    return names


def test_inline_markdown_becomes_html_and_the_rest_is_escaped():
    assert inline_html("Only `ok` rows; a<b & c") == "Only <code>ok</code> rows; a&lt;b &amp; c"
    assert inline_html("**best** `a<b` x**2") == "<strong>best</strong> <code>a&lt;b</code> x**2"
    assert inline_html("``a ` b`` and `` `x` ``") == "<code>a ` b</code> and <code>`x`</code>"
    assert inline_html("an unclosed ` backtick") == "an unclosed ` backtick"
    page = Page("T", "Intro `x`.", [Section("Notes", [Bullets(["`ok` only"]), Paragraph("`p`")])])
    assert "<p>Intro <code>x</code>.</p>" in page.to_html()
    assert (
        "<li><code>ok</code> only</li>" in page.to_html()
        and "<p><code>p</code></p>" in page.to_html()
    )
    assert "- `ok` only" in page.to_markdown()  # the Markdown keeps its Markdown


def test_report_html_renders_the_notes_backticks_as_code(tmp_path):
    assert report_main([str(EXP), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Only `ok` final-stage trials" in md
    assert "Only <code>ok</code> final-stage trials" in page
    body = page[page.index("<body>") :]
    notes = body[body.index("<h2>Notes</h2>") : body.index("<h2>Pareto front</h2>")]
    assert "`" not in notes


def test_html_names_in_the_paper_cluster_do_not_overlap():
    table, metric = _table(PAPER_DICE)
    spots = _spots(table, metric)
    drawn = [spot for spot, _ in spots if spot.drawn]
    assert len(drawn) == 8  # with the paper's spread, every name finds a free spot
    (width, height), margin = interactive.HTML_SIZE_PX, interactive.HTML_MARGIN_PX
    area = (margin["l"], margin["b"], width - margin["r"], height - margin["t"])
    boxes = {spot.text: spot.box.extents for spot in drawn}
    for i, (name, box) in enumerate(boxes.items()):
        assert area[0] <= box[0] and box[2] <= area[2] and area[1] <= box[1] and box[3] <= area[3]
        for other, other_box in list(boxes.items())[i + 1 :]:
            assert not _overlap(box, other_box), (name, other)

    fig = interactive.plotly_pareto(table, metric)
    assert not any("text" in (trace.mode or "") for trace in fig.data)  # no unplaced names
    labels = [a for a in fig.layout.annotations if a.xref != "paper"]
    assert sorted(a.text for a in labels) == sorted(boxes)
    by_name = {a.text: a for a in labels}
    for spot in drawn:  # drawn where the placer measured them (log10 x: plotly's log axis)
        note = by_name[spot.text]
        assert (note.xshift, note.yshift) == spot.offset
        assert note.x == pytest.approx(math.log10(PAPER_PARAMS[spot.text]))
    assert set(_hover_names(fig)) == set(PAPER_PARAMS)
    assert fig.layout.hovermode == "closest"
    assert (fig.layout.width, fig.layout.height) == interactive.HTML_SIZE_PX


def test_crowded_names_are_left_to_hover_and_overlapping_markers_name_each_other():
    table, metric = _table(CROWDED_DICE)
    spots = _spots(table, metric)
    hidden = {spot.text for spot, _ in spots if not spot.drawn}
    assert hidden  # eleven markers within ~55 px on one line cannot all carry a name
    drawn = [spot.box.extents for spot, _ in spots if spot.drawn]
    assert not any(_overlap(a, b) for i, a in enumerate(drawn) for b in drawn[i + 1 :])

    fig = interactive.plotly_pareto(table, metric)
    hover = _hover_names(fig)
    assert set(hover) == set(CROWDED_PARAMS)  # every strategy, drawn or not, has its hover
    assert "also under the cursor: " in hover["decoder_0_1_2"]
    for name, also in hover.items():  # "near" is symmetric
        for other in also.removeprefix("<br>also under the cursor: ").split(", ") if also else []:
            assert name in hover[other]
    note = [a.text for a in fig.layout.annotations if a.xref == "paper"]
    assert note == [f"{len(hidden)} name(s) hidden to avoid overlaps: hover a point"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Runs in the page once plotly has drawn: the plot area, every annotation's box, and the hover
# text shown when the mouse rests on each marker's centre.
_PROBE = """<script>
function freezeframeProbe() {
  const gd = document.querySelector('.plotly-graph-div');
  const drag = gd.querySelector('.nsewdrag');
  const a = drag.getBoundingClientRect();
  const out = {area: [a.left, a.top, a.right, a.bottom], labels: [], hovers: []};
  gd.querySelectorAll('g.annotation').forEach(g => {
    const r = g.getBoundingClientRect();
    out.labels.push([g.textContent, r.left, r.top, r.right, r.bottom]);
  });
  const layers = gd.querySelectorAll('.scatterlayer .trace'), targets = [];
  gd.data.forEach((trace, t) => {
    if (trace.mode !== 'markers' || trace.hoverinfo === 'skip') return;  // not the rings
    layers[t].querySelectorAll('.points path').forEach((p, k) => {
      const r = p.getBoundingClientRect();
      targets.push([trace.text[k], (r.left + r.right) / 2, (r.top + r.bottom) / 2]);
    });
  });
  let i = 0;
  (function next() {
    if (i === targets.length) {
      const pre = document.createElement('pre');
      pre.id = 'probe';
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
      return;
    }
    const [name, x, y] = targets[i++];
    drag.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: y, bubbles: true}));
    setTimeout(() => {
      const h = gd.querySelector('.hoverlayer .hovertext');
      out.hovers.push([name, h ? h.textContent : '']);
      next();
    }, 200);
  })();
}
window.addEventListener('load', () => setTimeout(freezeframeProbe, 500));
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium not installed (.ci/run adds it)")
@pytest.mark.parametrize("dice", [PAPER_DICE, CROWDED_DICE], ids=["paper", "crowded"])
def test_in_chromium_names_do_not_overlap_and_every_marker_hovers_its_name(dice, tmp_path):
    table, metric = _table(dice)
    fig = interactive.plotly_pareto(table, metric)
    page = tmp_path / "pareto.html"
    html = fig.to_html(full_html=True, include_plotlyjs=True)
    page.write_text(html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1000,600",
        "--virtual-time-budget=20000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    probe = json.loads(dom[start : dom.index("</pre>", start)].replace("&amp;", "&"))
    area = probe["area"]
    names = [label for label in probe["labels"] if "hidden to avoid overlaps" not in label[0]]
    assert names
    for i, (name, *box) in enumerate(names):
        assert area[0] <= box[0] and box[2] <= area[2] and area[1] <= box[1] and box[3] <= area[3]
        for other, *other_box in names[i + 1 :]:
            assert not _overlap(box, other_box), (name, other)
    assert sorted(name for name, _ in probe["hovers"]) == sorted(dice)
    for name, text in probe["hovers"]:  # the hover names the marker under the cursor
        title, _, rest = text.partition("trainable")
        also = rest.partition("also under the cursor: ")[2].split(", ")
        assert name == title or name in also, (name, text)
