"""`python -m search.bench.scale`: its windows of finished trials, and its driver-only smoke run
(the real searcher, trials table and progress lines, no Ray)."""

from __future__ import annotations

import json

import pandas as pd

from search.bench import scale


def test_the_windows_are_tenths_of_the_run_after_the_warm_up():
    assert scale.windows(10_000) == [(100, 1000)] + [
        (k * 1000, k * 1000 + 1000) for k in range(1, 10)
    ]
    assert scale.windows(1000)[0] == (50, 100) and scale.windows(1000)[-1] == (900, 1000)
    assert scale.windows(40)[0] == (2, 4) and scale.windows(45)[-1] == (36, 45)


def test_driver_only_smoke_run_times_every_trial_and_leaves_one_row_per_trial(
    tmp_path, monkeypatch, capsys
):
    kept = []
    monkeypatch.setattr(scale.shutil, "rmtree", lambda path, **_: kept.append(path))
    out = tmp_path / "scale.json"
    assert scale.main(["--trials", "40", "--gpus", "8", "--driver-only", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["finished"] == 40 and figures["driver_only"]
    assert figures["trials_csv_appends"] == 3 * 40  # start, result, end: one line each
    assert list(figures["bookkeeping_ms_per_trial_cpu"]) == [
        f"{a}-{b}" for a, b in scale.windows(40)
    ]
    assert all(ms > 0 for ms in figures["sampler_ms_per_trial_cpu"].values())
    assert set(figures["driver_memory_mb_at_finished"]) >= {"4", "40"}
    # The stage's end replaced trials.csv with the whole table: pandas sees one row per trial.
    trials = pd.read_csv(f"{kept[0]}/scale/trials.csv")
    assert len(trials) == 40 and trials.trial_name.is_unique and (trials.status == "ok").all()


def test_too_few_trials_are_refused_before_any_work(capsys):
    assert scale.main(["--trials", "5", "--driver-only"]) == 2
    assert "--trials 5: at least 20" in capsys.readouterr().err
