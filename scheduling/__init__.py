"""The scheduling brain: pure numpy, no I/O beyond the packaged data in ``scheduling/data``.

- ``carbon``: :class:`~scheduling.carbon.CarbonSeries`, timestamps, the shipped region tables and series
  (providers, CSV files and the embedded provider live in the ``carbon`` package, which imports this one).
- ``forecast``: the seasonal forecaster (and the naive baseline it is measured against).
- ``catalog``: EC2 fleet templates with power draw and spot-interruption data.
- ``prediction``: runtime p50/p90 from past runs.
- ``scoring``: :func:`~scheduling.scoring.plan_schedule`, the choice of a start time.
- ``paired``: the paired, empirical decision rule for history-based forecasts and its per-zone skill table.
- ``chart``: the SVG preview; ``backtest``: replaying submissions against a series.
"""
