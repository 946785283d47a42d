"""The examples of docs/python.md run as written: the two-variant TG-119 script (goals table,
DVH figure, a written plan) and the CVXPY script on rtopt's influence matrix."""

from __future__ import annotations

import csv
import subprocess
import sys

import pydicom

from conftest import REPO


def run(script: str, *args: str, cwd) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "python" / "examples" / script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_tg119_variants_example(tmp_path):
    stdout = run("tg119_variants.py", str(tmp_path / "out"), cwd=tmp_path)
    out = tmp_path / "out"
    assert (out / "dvh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "goals.csv").open()))
    assert {r["plan"] for r in rows} == {"protocol", "Core x2"}
    d10 = {r["plan"]: float(r["achieved"]) for r in rows if r["structure"] == "Core" and r["goal"] == "D10 <= 25 Gy"}
    # Doubling the Core overdose weight lowers the Core D10 of the deliverable plan.
    assert d10["Core x2"] < d10["protocol"] <= 25.0
    plan = pydicom.dcmread(out / "core-x2" / "RTPLAN.dcm")
    assert plan.Modality == "RTPLAN" and len(plan.BeamSequence) == 9
    assert "wrote" in stdout


def test_cvxpy_example(tmp_path):
    stdout = run("cvxpy_influence.py", cwd=tmp_path)
    assert "CVXPY + Clarabel: optimal" in stdout
    assert list(tmp_path.iterdir()) == []  # it writes nothing
