"""Shared settings for the runner tests (runners run as plain host subprocesses)."""

import os
import shutil

import pytest

DENO_SKIP_REASON = (
    "Deno runner tests skipped: set DENO_BIN to a deno binary or put `deno` on PATH "
    "(pip download --no-deps deno -d /tmp/denowheel, then unzip the member "
    "deno-*.data/scripts/deno)"
)


def find_deno():
    """The deno binary to test with: $DENO_BIN, else `deno` on PATH, else None."""
    path = os.environ.get("DENO_BIN")
    if path:
        return path if os.access(path, os.X_OK) else None
    return shutil.which("deno")


def pytest_terminal_summary(terminalreporter):
    # test_runners.py has the same lookup (not imported from here: conftest module
    # names clash between test directories).
    if find_deno() is None:
        terminalreporter.write_line(DENO_SKIP_REASON, yellow=True)


@pytest.fixture(scope="session")
def deno_dir(tmp_path_factory):
    # One empty DENO_DIR per session, as a fresh container has one (cache reuse across
    # tests only saves time).
    return str(tmp_path_factory.mktemp("deno_dir"))
