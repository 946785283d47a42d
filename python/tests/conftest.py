"""Shared fixtures of the Python package's tests: the repository's TG-119 case, prepared
once per session (beams and influence matrix), and the rtopt command line of the same
checkout (RTOPT_BIN, set by tests/python.rs) to compare against."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import rtopt

REPO = Path(__file__).resolve().parents[2]
TG119 = REPO / "data" / "tg119"
TG119_PROTOCOL = TG119 / "protocol.toml"


@pytest.fixture(scope="session")
def rtopt_bin() -> Path:
    """The `rtopt` binary of this checkout (cargo's CARGO_BIN_EXE_rtopt via RTOPT_BIN, else
    target/release/rtopt)."""
    p = Path(os.environ.get("RTOPT_BIN", REPO / "target" / "release" / "rtopt"))
    if not p.is_file():
        pytest.fail(f"no rtopt binary at {p}: build it (cargo build --release) or set RTOPT_BIN")
    return p


@pytest.fixture(scope="session")
def tg119_case() -> rtopt.Case:
    return rtopt.Case.load(TG119)


@pytest.fixture(scope="session")
def tg119_protocol() -> rtopt.Protocol:
    return rtopt.Protocol.load(TG119_PROTOCOL)


class EventLog:
    """A progress callback that keeps every event."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def started(self, stage: str) -> int:
        return sum(1 for e in self.events if e["event"] == "stage_started" and e["stage"] == stage)


@pytest.fixture(scope="session")
def tg119_prepared(tg119_case, tg119_protocol):
    """TG-119 prepared once, with its event log."""
    log = EventLog()
    prepared = rtopt.Planner(tg119_case, tg119_protocol, progress=log).prepare()
    return prepared, log


@pytest.fixture(scope="session")
def tg119_base(tg119_prepared):
    """The protocol as given, optimised once."""
    prepared, _ = tg119_prepared
    return prepared.optimise()


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
