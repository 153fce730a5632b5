"""The ``fuzz`` fixture (default or ``--fuzz-long`` budget) and the per-entry-point case counts."""

from __future__ import annotations

import pytest
from fuzz_contract import CASES, Fuzz


@pytest.fixture
def fuzz(request) -> Fuzz:
    return Fuzz(long=request.config.getoption("--fuzz-long", default=False))


def pytest_terminal_summary(terminalreporter) -> None:
    if not CASES:
        return
    terminalreporter.section("fuzz cases per entry point")
    for entry_point, count in sorted(CASES.items()):
        terminalreporter.write_line(f"{entry_point:<40} {count:>7}")
    terminalreporter.write_line(f"{'total':<40} {sum(CASES.values()):>7}")
