"""The deadline-at-risk maths of JobRunWorkflow (pure): the conditional p90 stays a finite duration whatever
the runtime model and the time already run. A run still going 17 s into a p50 of 0.5 s (a history of quick
runs) made it infinite, the workflow task failed on ``timedelta(seconds=inf)`` and the run stayed RUNNING."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.job_run import _conditional_p90, _risk_elapsed


def test_a_run_far_past_its_model_still_has_a_finite_p90():
    got = _conditional_p90(0.5, 0.6, 17.0)
    assert math.isfinite(got) and got >= 17.0
    assert datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=got)  # no OverflowError


@settings(max_examples=300, deadline=None)
@given(
    p50=st.floats(1e-3, 1e6),
    ratio=st.floats(1.0, 50.0),
    elapsed=st.floats(0.0, 1e8),
)
def test_conditional_p90_is_finite_and_never_before_now(p50, ratio, elapsed):
    got = _conditional_p90(p50, p50 * ratio, elapsed)
    assert math.isfinite(got) and got >= elapsed
    timedelta(seconds=got)  # representable
    at = _risk_elapsed(p50, p50 * ratio, 3600.0)
    assert at is None or 0.0 <= at <= 3600.0
