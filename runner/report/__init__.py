"""The studies' tables and plots from a sweep's trial runs: rows from MLflow (``rows``), the
tables (``tables``), Pareto frontiers and iso-interactivity (``frontier``), PNG plots
(``plots``, matplotlib imported only when drawing), GPU time taken beside the estimate
(``spend``) and ``python -m runner report`` (``write``)."""

from runner.report import frontier, rows, spend, tables, write
from runner.report.write import main

__all__ = ["frontier", "main", "rows", "spend", "tables", "write"]
