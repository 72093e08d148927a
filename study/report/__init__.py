"""The study report: one self-contained HTML page, ``report/index.html``, plus
``report/summary.json``, assembled from the typed stage results in a run directory.

Each section is a module of ``study.report.sections`` with one function from result
types to its template's context, and a jinja2 template of its own under
``templates/``. The package reads results (``*.results`` modules), never stage code,
so a report can be rebuilt at any time from what is on disk.
"""

from study.report.build import build_report, feature_diff_page

__all__ = ["build_report", "feature_diff_page"]
