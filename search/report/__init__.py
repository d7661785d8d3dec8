"""The report of one experiment: `python -m search.report EXPERIMENT_DIR`, or `build_report`.

Modules: `load` reads the saved results, `stats` computes (by one rule, `SEPARATION_RULE`, with
`bootstrap`'s resampling over seeds and test images), `plots` (with `labels`) draws and
`interactive` draws the HTML page's plot, `text` words the tables and notes, `clinical` the
per-image view (HC error, failure rate, paired per-image tests; `clinical_plots` draws its
Bland-Altman and worst-images figures), `explore`, `fractions` and `compute` the sections of the
explore stage, the training-set sizes and the device-hours, `tune` the tune stage's gains and
parameter importance, `page` renders one page as Markdown and HTML, `build` puts them together
and writes the files.
"""

from search.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
