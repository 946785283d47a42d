"""Planning through Python: the same plan as `rtopt plan` (byte-identical RT Plan and RT Dose,
identical goal figures), variants on the prepared matrix without rebuilding it, the influence
matrix as SciPy CSR that reproduces the optimiser's dose, and results that pandas and
pydicom take as they are."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pydicom
import pytest

import rtopt
from conftest import TG119, EventLog

#: A fixed creation time (2026-12-01 00:00:00 UTC) for byte-identical outputs.
EPOCH = "1764547200"


def test_python_plan_is_the_command_lines_plan(tg119_case, tg119_protocol, rtopt_bin, workdir):
    cli_out = workdir / "cli"
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    run = subprocess.run(
        [str(rtopt_bin), "plan", str(TG119), "--out", str(cli_out), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr

    py_out = workdir / "python"
    planned = rtopt.plan(tg119_case, tg119_protocol, out=py_out, source_date_epoch=EPOCH)

    for name in ("RTPLAN.dcm", "RTDOSE.dcm"):
        assert (py_out / name).read_bytes() == (cli_out / name).read_bytes(), name
    cli_report = json.loads((cli_out / "report.json").read_text())
    assert planned.goals == cli_report["goals"]  # every figure, to the last bit
    assert planned.report["delivery"] == cli_report["delivery"]
    assert planned.constraints_met

    # TG-119's report-only goal Core D10 <= 10 Gy is not met (16.7 Gy): `rtopt plan
    # --strict` exits 4, and so `strict` refuses it by name; the hard goals are met.
    rtopt.refuse_unmet(planned)
    with pytest.raises(rtopt.PlanRefusedError, match="Core D10 <= 10 Gy") as e:
        rtopt.refuse_unmet(planned, strict=True)
    assert e.value.planned is planned
    strict = subprocess.run(
        [str(rtopt_bin), "plan", str(TG119), "--out", str(workdir / "strict"), "--quiet", "--strict"],
        env=env, capture_output=True, text=True,
    )
    assert strict.returncode == 4, strict.stderr

    # The dose array is RTDOSE's, placed where pydicom places the file's pixels.
    ds = pydicom.dcmread(py_out / "RTDOSE.dcm")
    grid = planned.dose_grid
    assert ds.Modality == "RTDOSE"
    assert (ds.NumberOfFrames, ds.Rows, ds.Columns) == grid.shape
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(
        grid.image_position_patient(0), abs=1e-6
    )
    assert [float(v) for v in ds.ImageOrientationPatient] == list(grid.image_orientation_patient)
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([grid.spacing_mm[1], grid.spacing_mm[0]])
    offsets = np.asarray([float(v) for v in ds.GridFrameOffsetVector])
    assert np.diff(offsets) == pytest.approx(grid.spacing_mm[2])
    scaling = float(ds.DoseGridScaling)
    from_file = ds.pixel_array.astype(np.float64) * scaling
    assert np.max(np.abs(from_file - planned.dose_gy)) <= scaling
    assert planned.dose_gy.max() > tg119_protocol.prescription_gy  # a plan, not zeros

    # The DVHs in long form: one cumulative curve per structure, from 100 % down.
    dvh = pd.DataFrame(planned.dvh())
    assert set(dvh.structure) == {"Core", "OuterTarget", "BODY"}
    for _, curve in dvh.groupby("structure"):
        assert curve.volume_pct.iloc[0] == pytest.approx(100.0)
        assert np.all(np.diff(curve.volume_pct.to_numpy()) <= 1e-9)


def test_variant_reuses_the_prepared_matrix(tg119_prepared, tg119_base):
    prepared, log = tg119_prepared
    assert log.started("dose influence matrix") == 1
    sparing = prepared.optimise(weights={("Core", "overdose"): 600.0}, name="core x2")
    # No stage of `prepare` ran again: counted by the library's own stage events.
    assert log.started("dose influence matrix") == 1
    assert prepared.stage_counts()["dose influence matrix"] == 1
    assert prepared.stage_counts()["beams"] == 1
    assert log.started("optimisation") >= 2

    def core_overdose(plan):
        goal = next(g for g in plan.goals if g["structure"] == "Core" and "overdose" in g["description"])
        return goal["objective_value"]

    # Twice the weight: a smaller Core overdose term per unit weight.
    assert core_overdose(sparing) / 600.0 < core_overdose(tg119_base) / 300.0
    assert sparing.name == "core x2"
    assert not np.array_equal(sparing.weights_mu, tg119_base.weights_mu)


def test_influence_matrix_reproduces_the_optimisers_dose(tg119_prepared, tg119_protocol):
    prepared, _ = tg119_prepared
    plan = prepared.optimise(name="again")
    a = prepared.influence_matrix()
    voxels = prepared.dose_grid_voxels()
    assert a.shape == (voxels.size, prepared.n_beamlets)
    assert a.dtype == np.float32 and a.nnz > 1_000_000
    assert np.all(np.diff(voxels.astype(np.int64)) > 0)
    rows = (a @ plan.weights_mu) * tg119_protocol.fractions
    dose = plan.dose_gy.ravel()
    np.testing.assert_allclose(rows, dose[voxels], rtol=1e-12, atol=1e-12)
    # Outside the computed voxels the grid holds zeros.
    outside = np.ones(dose.size, dtype=bool)
    outside[voxels] = False
    assert not dose[outside].any()
    np.testing.assert_array_equal(prepared.dose_of(plan.weights_mu), plan.dose_gy)
    # The CSR arrays SciPy holds are the ones handed over (no second copy).
    data, indices, indptr, shape = prepared.influence_csr()
    assert (data.dtype, indices.dtype, indptr.dtype) == (np.float32, np.int32, np.int32)
    assert shape == a.shape and indptr[-1] == a.nnz
    # SciPy keeps these index types as they are: influence_matrix() builds its matrix so.
    import scipy.sparse

    b = scipy.sparse.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    assert np.shares_memory(b.data, data) and np.shares_memory(b.indices, indices)
    assert np.shares_memory(b.indptr, indptr)
    assert (a.indices.dtype, a.indptr.dtype) == (np.int32, np.int32)


def test_the_same_variant_gives_bit_identical_weights(tg119_prepared, tg119_base):
    prepared, _ = tg119_prepared
    again = prepared.optimise()
    np.testing.assert_array_equal(again.weights_mu, tg119_base.weights_mu)
    assert again.objective == tg119_base.objective


def test_goals_and_dvh_are_dataframes_without_glue(tg119_base, tg119_protocol):
    goals = pd.DataFrame(tg119_base.goals)
    n_goals = sum(len(s["goals"]) for s in tg119_protocol.to_dict()["structure"])
    assert len(goals) == n_goals
    d95 = goals[(goals.structure == "OuterTarget") & goals.description.str.contains("D95")]
    assert len(d95) == 1 and bool(d95.met.iloc[0])
    assert float(d95.achieved_gy.iloc[0]) >= 50.0 - 0.05  # TG-119 goal D95 >= 50 Gy


def test_progress_callback_error_stops_the_solve_and_is_raised(tg119_case, tg119_protocol):
    class Boom(Exception):
        pass

    armed = {"on": True}

    def progress(event):
        if armed["on"] and event["event"] == "iteration":
            raise Boom("stop here")

    prepared = rtopt.Planner(
        tg119_case, tg119_protocol, progress=progress, fidelity_corrections=0
    ).prepare()
    with pytest.raises(Boom):
        prepared.optimise()
    # The next call has a fresh cancellation token and runs to the end.
    armed["on"] = False
    plan = prepared.optimise()
    assert plan.status == "Solved" and plan.iterations > 0


def test_a_planner_is_prepared_once(tg119_case, tg119_protocol):
    planner = rtopt.Planner(tg119_case, tg119_protocol, fidelity_corrections=0)
    planner.prepare()
    with pytest.raises(rtopt.InputError, match="prepares once"):
        planner.prepare()


def test_output_folder_is_checked_before_computation(tg119_case, tg119_protocol, workdir):
    log = EventLog()
    keep = workdir / "not-rtopt"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(rtopt.InputError) as e:
        rtopt.plan(tg119_case, tg119_protocol, out=keep, force=True, progress=log)
    assert str(keep) in str(e.value)
    assert log.events == []
    assert (keep / "notes.txt").read_text() == "mine"
    # An output inside an input is refused too; a callback that raises at the first event
    # keeps a regression from computing and writing a plan into the repository.
    def refuse(event):
        raise AssertionError(f"computation started: {event}")

    with pytest.raises(rtopt.InputError):
        rtopt.plan(tg119_case, tg119_protocol, out=TG119 / "out", progress=refuse)
    assert not (TG119 / "out").exists()


def test_malformed_variant_is_an_input_error(tg119_prepared):
    prepared, _ = tg119_prepared
    with pytest.raises(rtopt.InputError, match="not a number"):
        prepared.optimise(weights={("Core", "overdose"): "heavy"})
    with pytest.raises(rtopt.InputError, match="no goal of 'Core' matches 'nothing'"):
        prepared.optimise(weights={("Core", "nothing"): 1.0})
