"""The studies' tables and plots from a sweep's trial runs: rows from MLflow (``rows``), the
tables (``tables``), Pareto frontiers and iso-interactivity (``frontier``), PNG plots
(``plots``, matplotlib imported only when drawing) and ``python -m runner report`` (``write``)."""

from runner.report import frontier, rows, tables, write
from runner.report.write import main

__all__ = ["frontier", "main", "rows", "tables", "write"]
