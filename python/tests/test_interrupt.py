"""Ctrl-C: SIGINT to a Python process that is building the influence matrix, solving the
beamlet weights or solving the segment weights stops the computation
within a second (the library's cancellation token, checked per beamlet and per solver
iteration), raises KeyboardInterrupt, and leaves nothing written."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import TG119

SCRIPT = r"""
import sys, time, pathlib, rtopt
wait_for, out = sys.argv[1], pathlib.Path(sys.argv[2])
case = rtopt.Case.load(sys.argv[3])
protocol = rtopt.Protocol.load(pathlib.Path(sys.argv[3]) / "protocol.toml")
told = False
def progress(event):
    global told
    key = event["event"] if event["event"] == "iteration" else event.get("stage")
    if not told and event["event"] in ("iteration", "stage_started") and key == wait_for:
        told = True
        print("RUNNING", flush=True)
try:
    rtopt.plan(case, protocol, out=out, progress=progress)
    print("FINISHED", flush=True)
except KeyboardInterrupt:
    print("INTERRUPTED", time.monotonic(), flush=True)
"""


def line_reader(stream):
    """Lines of `stream` through a queue, so that a test can wait with a deadline."""
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()

    def next_line(timeout_s: float) -> str:
        try:
            return lines.get(timeout=timeout_s)
        except queue.Empty:
            return "<no line within %.0f s>" % timeout_s

    return next_line


@pytest.mark.parametrize("wait_for", ["dose influence matrix", "iteration", "segment weights"])
def test_sigint_stops_within_a_second_and_writes_nothing(wait_for, tmp_path):
    out = tmp_path / "plan"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, wait_for, str(out), str(TG119)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    next_line = line_reader(proc.stdout)
    try:
        line = next_line(120)
        assert line.strip() == "RUNNING", line
        time.sleep(0.2)  # well inside the stage
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        line = next_line(30).split()
        assert line and line[0] == "INTERRUPTED", line
        stopped_after_s = float(line[1]) - sent
        print(f"{wait_for}: stopped {stopped_after_s:.3f} s after SIGINT")
        assert stopped_after_s < 1.0, f"stopped {stopped_after_s:.2f} s after SIGINT"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "something was left behind"
