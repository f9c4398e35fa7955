"""pytest set-up: the C fixtures are built once per session."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="session", autouse=True)
def _built_fixtures() -> None:
    """Build the C fixtures once (make is incremental)."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures")], check=True)
