"""`python -m search.report` on a hand-made experiment whose answers were worked out by hand.

tests/data/report/exp_small/trials.csv, final stage, test Dice per seed (0, 1, 2, 3):
  baseline      31,037,633 trainable  0.90 0.92 0.94 0.96       mean 0.93
  decoder        4,404,928            0.95 0.96 0.97 0.96       mean 0.96
  encoder        2,223,872            0.80 0.82 failed running  mean 0.81 (n=2)
  decoder_2_3_4    164,032            0.94 0.95 0.93 0.94       mean 0.94
  decoder_4          6,976            0.85 failed stopped(0.99) -   mean 0.85 (n=1; 0.99 must not count)
  all                    -            failed failed - -          no mean
  decoder_0 (in config.yaml only)     -  -  -  -                 all four seeds missing
sd by hand: decoder sqrt(0.0002/3) = 0.0081650, baseline sqrt(0.0020/3) = 0.0258199,
encoder sqrt(0.0002/1) = 0.0141421. No strategy has 5 seeds and the experiment has no per-image
tables, so by the report's rule (`stats.SEPARATION_RULE`) there is no interval and no test
(test_report_verdicts.py checks the t statistics with 5 seeds and the bootstrap with 2).
Front on (fewer params, higher Dice): decoder_4 -> decoder_2_3_4 -> decoder; baseline is
dominated by decoder, encoder by decoder_2_3_4 (decoder_4 also dominates it, but ranks lower).
"""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from helpers import DATA

from search.report import build_report
from search.report import plots as report_plots
from search.report import stats as report_stats
from search.report import text as report_text
from search.report import tune as report_tune
from search.report.__main__ import main as report_main
from search.report.build import FILES
from search.report.page import Bullets, Figure, Page, Paragraph, Section, Table
from search.shared.metrics import get_metric

EXP = DATA / "report" / "exp_small"
PLANNED = ["baseline", "decoder", "encoder", "decoder_0", "decoder_2_3_4", "decoder_4", "all"]


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    return pd.read_csv(EXP / "trials.csv")


@pytest.fixture(scope="module")
def dice_table(trials) -> pd.DataFrame:
    metric = get_metric("test_dice")
    return report_stats.strategy_stats(trials, metric, PLANNED, [0, 1, 2, 3]).set_index("strategy")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The whole report of the fixture experiment, built once through the CLI."""
    out = tmp_path_factory.mktemp("report")
    assert report_main([str(EXP), "--out", str(out)]) == 0
    return out


def test_means_and_sds_match_hand_computation_and_few_seeds_get_no_interval(dice_table):
    expected = {  # strategy: (n, mean, sd)
        "decoder": (4, 0.96, 0.0081650),
        "baseline": (4, 0.93, 0.0258199),
        "encoder": (2, 0.81, 0.0141421),
        "decoder_2_3_4": (4, 0.94, 0.0081650),
    }
    for name, (n, mean, sd) in expected.items():
        row = dice_table.loc[name]
        assert row["test_dice_n"] == n
        assert row["test_dice_mean"] == pytest.approx(mean, abs=1e-9)
        assert row["test_dice_sd"] == pytest.approx(sd, abs=1e-6)
        # 2-4 seeds and no per-image tables: no t-interval (it was 0.96 +- 0.0130 for decoder)
        assert math.isnan(row["test_dice_ci95_low"]) and math.isnan(row["test_dice_ci95_high"])
        assert row["test_dice_ci_method"] == ""


def test_failed_running_and_stopped_rows_are_counted_not_averaged(dice_table):
    # decoder_4's stopped-early seed scored 0.99: averaging it in would give 0.92.
    assert dice_table.loc["decoder_4", "test_dice_mean"] == pytest.approx(0.85)
    assert dice_table.loc["decoder_4", "test_dice_n"] == 1
    assert math.isnan(dice_table.loc["decoder_4", "test_dice_ci95_low"])
    assert dice_table.loc["decoder_4", "seed_status"] == (
        "ok 1/4, failed 1, stopped early 1, missing 1"
    )
    assert dice_table.loc["encoder", "seed_status"] == "ok 2/4, failed 1, running 1"
    assert dice_table.loc["all", "seed_status"] == "ok 0/4, failed 2, missing 2"
    assert dice_table.loc["decoder_0", "seed_status"] == "ok 0/4, missing 4"
    assert pd.isna(dice_table.loc["all", "rank"]) and pd.isna(
        dice_table.loc["all", "test_dice_mean"]
    )


def test_ranks_pareto_flags_and_dominators(dice_table):
    ranks = dice_table["rank"].dropna().astype(int).to_dict()
    assert ranks == {"decoder": 1, "decoder_2_3_4": 2, "baseline": 3, "decoder_4": 4, "encoder": 5}
    optimal = dice_table["pareto_optimal"].dropna().astype(bool).to_dict()
    assert {k for k, v in optimal.items() if v} == {"decoder", "decoder_2_3_4", "decoder_4"}
    assert dice_table.loc["baseline", "dominated_by"] == "decoder"
    assert dice_table.loc["encoder", "dominated_by"] == "decoder_2_3_4"
    assert pd.isna(dice_table.loc["decoder_0", "pareto_optimal"])


def test_lower_is_better_metric_flips_rank_and_front(trials):
    # HD means: decoder_4 1.5, decoder 2.0, decoder_2_3_4 2.5, baseline 3.0, encoder 4.0 (mm).
    # Read the wrong way round, encoder (worst HD, 2.2M params) would be on the front.
    table = report_stats.strategy_stats(trials, get_metric("test_hd_mm"))
    table = table.set_index("strategy")
    ranks = table["rank"].dropna().astype(int).to_dict()
    assert ranks == {"decoder_4": 1, "decoder": 2, "decoder_2_3_4": 3, "baseline": 4, "encoder": 5}
    optimal = table["pareto_optimal"].dropna().astype(bool)
    assert optimal[optimal].index.tolist() == ["decoder_4"]
    assert set(table["dominated_by"].drop("decoder_4").dropna()) - {""} == {"decoder_4"}


def test_fewer_than_five_common_seeds_without_per_image_tables_are_not_tested(dice_table):
    # A paired t-test over 2-4 seeds is not the rule's (it said encoder p=0.022, separated).
    assert dice_table.loc["encoder", "n_paired"] == 2
    assert dice_table.loc["decoder_2_3_4", "n_paired"] == 4
    for name, common in (("baseline", 4), ("decoder_2_3_4", 4), ("encoder", 2), ("decoder_4", 1)):
        assert pd.isna(dice_table.loc[name, "separated_from_best"])
        assert math.isnan(dice_table.loc[name, "p_value_vs_best"])
        assert dice_table.loc[name, "vs_best"] == (
            f"not tested: {common} common seed(s), fewer than 5, and no per-image results"
        )
    # The difference of the means is still shown: decoder_2_3_4 0.94 - decoder 0.96.
    assert dice_table.loc["decoder_2_3_4", "diff_vs_best"] == pytest.approx(-0.02)


def test_reduction_against_baseline_gives_the_papers_85_8_percent(dice_table, trials):
    assert round(dice_table.loc["decoder", "trainable_reduction_pct"], 1) == 85.8
    no_baseline = trials[trials["strategy"] != "baseline"]
    metric = get_metric("test_dice")
    table = report_stats.strategy_stats(no_baseline, metric)
    assert table["trainable_reduction_pct"].isna().all()
    shown = report_text.display_table(table, metric)
    assert set(shown["Reduction"]) == {"n/a"}


def test_tune_gain_over_the_papers_recipe(trials):
    gains = report_tune.tune_gains(trials).set_index("strategy")
    assert gains.loc["decoder", "gain_val_dice"] == pytest.approx(0.93 - 0.90)
    assert gains.loc["decoder", "best_recipe"] == "lr 0.003, step (gamma 0.5, every 2 epochs)"
    assert gains.loc["encoder", "gain_val_dice"] == pytest.approx(0.0)
    assert gains.loc["encoder", "note"] == "the paper's recipe was the best"
    assert math.isnan(gains.loc["baseline", "gain_val_dice"])
    assert "not among the tune trials" in gains.loc["baseline", "note"]


def test_tune_gain_warns_when_epochs_differ(trials):
    shorter = trials.copy()
    shorter.loc[shorter["trial_name"] == "decoder__seed0__a2", "epochs"] = 1  # ASHA-stopped
    note = report_tune.tune_gains(shorter).set_index("strategy").loc["decoder", "note"]
    assert note == "the best ran 1 epoch(s), the paper's recipe 3: not like for like"


def test_shared_exams_between_test_and_train():
    split = pd.read_csv(EXP / "split.csv", dtype=str)
    assert report_stats.shared_exams(split) == {"train": ["010"], "val": ["012"]}


def test_cli_writes_every_file_with_the_numbers(built):
    for name in FILES:
        assert (built / name).stat().st_size > 0, name
    csv = pd.read_csv(built / "strategies.csv")
    assert csv["strategy"].tolist()[:5] == [
        "decoder",
        "decoder_2_3_4",
        "baseline",
        "decoder_4",
        "encoder",
    ]
    assert {"strategy", "rank", "pareto_optimal", "seed_status", "trainable_params"} <= set(csv)
    md = (built / "report.md").read_text()
    assert "| 1 | decoder | ok 4/4 | 96.00 ± 0.82 (n=4, no interval) |" in md
    assert "85.8%" in md and "99.98%" in md  # decoder_4 must not round to 100.0%
    assert "85.00 (n=1, no interval)" in md
    assert "ok 2/4, failed 1, running 1 (seed 2: RuntimeError: CUDA out of memory)" in md
    assert "shares exams with the training split" in md and "(010)" in md
    assert "encoder weights were not ImageNet" in md
    assert (
        "Not tested (fewer than 5 common seeds and no per-image results): decoder_2_3_4, "
        "baseline, decoder_4, encoder." in md
    )
    assert "**Warning: too few seeds for seed-level statistics** (ok seeds: decoder 4," in md
    assert (
        "| decoder | 2/3 | lr 0.003, step (gamma 0.5, every 2 epochs) | 93.00 | 90.00 | +3.00 |"
        in md
    )


def test_png_is_paper_sized_and_labels_do_not_overlap(built, trials):
    image = matplotlib.image.imread(built / "pareto.png")
    assert image.shape[:2] == (1350, 2100)  # 4.5 x 7 in at 300 dpi
    metric = get_metric("test_dice")
    table = report_stats.strategy_stats(trials, metric)
    fig = report_plots.pareto_figure(table, metric)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(boxes) == {"decoder", "decoder_2_3_4", "baseline", "decoder_4 (n=1)", "encoder"}
    frame = ax.get_window_extent(renderer)
    names = sorted(boxes)
    for i, a in enumerate(names):
        assert frame.contains(boxes[a].x0, boxes[a].y0) and frame.contains(boxes[a].x1, boxes[a].y1)
        for b in names[i + 1 :]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    report_plots.save(fig)


def test_file_uri_and_default_out_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = build_report(EXP.resolve().as_uri())
    assert result.out_dir == Path("report_exp_small")
    assert (tmp_path / "report_exp_small" / "strategies.csv").is_file()
    assert "decoder" in result.text and "Rank" in result.text


def test_local_default_out_dir_is_inside_the_experiment(tmp_path):
    exp = shutil.copytree(EXP, tmp_path / "exp")
    (exp / "config.yaml").unlink()
    result = build_report(str(exp), metric="test_iou")
    assert result.out_dir == exp / "report" and (exp / "report" / "report.html").is_file()
    assert any("config.yaml not found" in n for n in result.notes)


def test_clean_experiment_gets_no_honesty_warnings(tmp_path):
    exp = shutil.copytree(EXP, tmp_path / "exp")
    trials = pd.read_csv(exp / "trials.csv")
    trials[trials["stage"] != "pretrain"].to_csv(exp / "trials.csv", index=False)
    config = (exp / "config.yaml").read_text()
    config = config.replace("encoder_weights: none", "encoder_weights: imagenet")
    (exp / "config.yaml").write_text(config.replace("[pretrain, tune, final]", "[tune, final]"))
    (exp / "split.csv").write_text("filename,split\n010_HC.png,train\n011_HC.png,test\n")
    notes = " ".join(build_report(str(exp), out_dir=str(tmp_path / "out")).notes)
    assert "ImageNet" not in notes and "shares exams" not in notes


def test_running_experiment_without_a_finished_seed_still_reports(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    trials = pd.read_csv(EXP / "trials.csv")
    running = trials[trials["stage"] == "final"].assign(status="running", test_dice=math.nan)
    running.to_csv(exp / "trials.csv", index=False)
    result = build_report(str(exp))
    assert result.table["rank"].isna().all()
    assert result.table.set_index("strategy").loc["decoder", "seed_status"] == "ok 0/4, running 4"
    assert (exp / "report" / "pareto.png").is_file()
    assert any("not finished (21 seeds running" in n for n in result.notes)


def test_ok_seed_without_a_value_is_said_not_hidden(tmp_path):
    exp = shutil.copytree(EXP, tmp_path / "exp")
    trials = pd.read_csv(exp / "trials.csv")
    trials.loc[trials["trial_name"] == "decoder__seed3", "test_hd_mm"] = math.nan  # empty mask
    trials.to_csv(exp / "trials.csv", index=False)
    result = build_report(str(exp), metric="test_hd_mm")
    decoder = result.table.set_index("strategy").loc["decoder"]
    assert decoder["test_hd_mm_n"] == 3 and decoder["seeds_ok"] == 4
    assert decoder["test_hd_mm_mean"] == pytest.approx((2.1 + 1.9 + 2.2) / 3)
    assert "decoder: HD (mm) over 3 of 4 ok seeds (the others reported no value)." in result.notes


def test_unknown_metric_and_missing_trials_fail_with_a_message(tmp_path, capsys):
    assert report_main([str(EXP), "--metric", "test_speed", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'test_speed'" in err and "test_hd_mm" in err
    assert report_main([str(tmp_path / "nowhere")]) == 2
    assert "no trials.csv" in capsys.readouterr().err


def test_wandb_offline_writes_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_root"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_root").mkdir()
    out = tmp_path / "out"
    assert report_main([str(EXP), "--out", str(out), "--wandb", "offline"]) == 0
    runs = list((tmp_path / "wandb_root" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    assert not list(out.glob("wandb"))  # WANDB_DIR wins over the report folder
    # Run again: the same run id (a resumed run, not one more report run per call).
    assert report_main([str(EXP), "--out", str(out), "--wandb", "offline"]) == 0
    # Two run folders (wandb adds a suffix to the folder name when both start in one second),
    # one run id: read it from each folder's run-<id>.wandb, not from the folder name.
    runs = list((tmp_path / "wandb_root" / "wandb").glob("offline-run-*"))
    ids = {log.stem.removeprefix("run-") for run in runs for log in run.glob("run-*.wandb")}
    assert len(runs) == 2 and len(ids) == 1


def test_an_unreachable_wandb_is_given_up_after_the_timeout_and_the_files_stay(
    tmp_path, monkeypatch
):
    import wandb

    seen = {}

    def init(**kwargs):  # the server never answers: wandb.init raises after init_timeout
        seen.update(kwargs)
        raise TimeoutError("no answer")

    monkeypatch.setattr(wandb, "init", init)
    out = tmp_path / "out"
    argv = [str(EXP), "--out", str(out), "--wandb", "online", "--wandb-timeout-s", "7"]
    assert report_main(argv) == 0
    assert seen["settings"].init_timeout == 7 and seen["settings"].finish_timeout == 7
    assert (out / "report.md").exists()
    assert report_main([str(EXP), "--out", str(out), "--wandb-timeout-s", "0"]) == 2


def test_one_page_renders_the_same_content_as_markdown_and_html(tmp_path):
    png = tmp_path / "seeds.png"
    matplotlib.image.imsave(png, np.zeros((4, 4, 3)))
    frame = pd.DataFrame({"Strategy": ["decoder", "a|b"], "Dice (%)": ["96.00 ± 0.82", "-"]})
    page = Page(
        "Report <1>",
        "Intro & scope.",
        [
            Section("Strategies", [Table(frame, "strategies")]),
            Section("Notes", [Bullets(["decoder_4 -> decoder", "`ok` rows only"])]),
            Section("Seeds", [Figure("Seeds per strategy", png)]),
            Section("Tune stage", [Table(frame[:0], "tune", empty="No tune stage.")]),
            Section(None, [Paragraph("The end.")]),
        ],
    )
    md, page_html = page.to_markdown(), page.to_html()
    shown = _html_parts(page_html)
    assert _markdown_headings(md) == shown["headings"]
    assert shown["headings"] == ["Report <1>", "Strategies", "Notes", "Seeds", "Tune stage"]
    cells = [["Strategy", "Dice (%)"], ["decoder", "96.00 ± 0.82"], ["a|b", "-"]]
    assert _markdown_tables(md) == [_table_rows(page_html, "strategies")] == [cells]
    assert _markdown_bullets(md) == ["decoder_4 -> decoder", "`ok` rows only"]
    assert shown["items"] == ["decoder_4 -> decoder", "ok rows only"]  # `ok` is <code>ok</code>
    assert "<li><code>ok</code> rows only</li>" in page_html
    assert shown["paragraphs"] == ["Intro & scope.", "No tune stage.", "The end."]
    assert all(text in md for text in shown["paragraphs"])
    assert "![Seeds per strategy](seeds.png)" in md
    assert base64.b64encode(png.read_bytes()).decode() in page_html


def test_report_md_and_html_show_the_same_sections_tables_and_notes(built):
    md = (built / "report.md").read_text(encoding="utf-8")
    page_html = (built / "report.html").read_text(encoding="utf-8")
    shown = _html_parts(page_html)
    assert _markdown_headings(md) == shown["headings"]
    assert shown["headings"][1:] == [
        "Strategies (final stage)",
        "Notes",
        "Pareto front",
        "Seeds per strategy",
        "Clinical measurement (test images)",
        "Tune stage",
    ]
    assert "No per-image test results in this experiment" in md  # exp_small has no tables
    tables = [_table_rows(page_html, name) for name in ("strategies", "tune", "importance")]
    assert _markdown_tables(md) == tables
    assert len(tables[0]) == 1 + len(PLANNED)  # header + one row per strategy
    assert [_plain(b) for b in _markdown_bullets(md)] == shown["items"]
    assert len(shown["items"]) > 5


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium not installed (.ci/run adds it)")
def test_html_opens_in_headless_chromium_with_table_and_plot(built, tmp_path):
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (built / "report.html").resolve().as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    header, *rows = _table_rows(dom, "strategies")
    assert header[:3] == ["Rank", "Strategy", "Seeds"]
    by_name = {row[1]: dict(zip(header, row, strict=True)) for row in rows}
    assert [row[1] for row in rows] == [
        "decoder",
        "decoder_2_3_4",
        "baseline",
        "decoder_4",
        "encoder",
        "decoder_0",
        "all",
    ]
    assert by_name["decoder"]["Reduction"] == "85.8%"
    assert by_name["decoder_4"]["Dice (%)"] == "85.00 (n=1, no interval)"
    assert by_name["all"]["Seeds"] == "ok 0/4, failed 2, missing 2"
    assert "main-svg" in dom  # plotly ran from the inline script, with no network


def _table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cell texts of <table id=table_id>, row by row (stdlib parser: no lxml needed)."""

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.rows, self.cell = False, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table" and dict(attrs).get("id") == table_id:
                self.inside = True
            elif self.inside and tag == "tr":
                self.rows.append([])
            elif self.inside and tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False
            elif self.inside and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(page)
    return parser.rows


def _markdown_headings(md: str) -> list[str]:
    return re.findall(r"^#+ (.+)$", md, flags=re.M)


def _markdown_bullets(md: str) -> list[str]:
    return [line[2:] for line in md.splitlines() if line.startswith("- ")]


def _plain(markdown: str) -> str:
    """Inline Markdown as the text a browser shows: code spans and **bold** lose their marks."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", re.sub(r"(`+)(.+?)\1", r"\2", markdown))


def _markdown_tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table's cells, row by row, without the |---| rule; '\\|' read as '|'."""
    tables, previous = [], ""
    for line in md.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(---\|)+", line):
            if not previous.startswith("|"):
                tables.append([])
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            tables[-1].append([cell.strip().replace("\\|", "|") for cell in cells])
        previous = line
    return tables


def _html_parts(page: str) -> dict[str, list[str]]:
    """The texts of a page's h1/h2 headings, list items and paragraphs (stdlib parser)."""
    kinds = {"h1": "headings", "h2": "headings", "li": "items", "p": "paragraphs"}

    class Parts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts = {kind: [] for kind in kinds.values()}
            self.open, self.text = None, ""

        def handle_starttag(self, tag, attrs):
            if tag in kinds:
                self.open, self.text = tag, ""

        def handle_endtag(self, tag):
            if tag == self.open:
                self.parts[kinds[tag]].append(self.text.strip())
                self.open = None

        def handle_data(self, data):
            if self.open:
                self.text += data

    parser = Parts()
    parser.feed(page)
    return parser.parts
