"""pytest set-up: the C fixtures are built once per session."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import ROOT

# `make fuzz` runs the hypothesis tests long: ALLOCTRACE_FUZZ=N examples per test.
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("ALLOCTRACE_FUZZ") or 0) or 1,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
if os.environ.get("ALLOCTRACE_FUZZ"):
    settings.load_profile("fuzz")


@pytest.fixture(scope="session", autouse=True)
def _built_fixtures() -> None:
    """Build the C fixtures once (make is incremental)."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures")], check=True)
