"""Loading a case and a protocol from Python: the same voxels as the Rust library, arrays
placed on the patient grid, and bad input raised as the mapped exception naming the file."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import rtopt
from conftest import TG119, TG119_PROTOCOL


def test_voxel_counts_and_grid_match_the_rust_api(tg119_case, rtopt_bin):
    # `rtopt inspect --json` is the Rust API (Case::load + Case::inspect) in another process;
    # the Python side counts the mask arrays it received.
    out = subprocess.run(
        [str(rtopt_bin), "inspect", str(TG119), "--json"], capture_output=True, text=True, check=True
    )
    inspected = json.loads(out.stdout)
    rust = {s["name"]: s["voxels"] for s in inspected["structures"]}
    python = {name: int(s.mask.sum()) for name, s in tg119_case.structures.items()}
    assert set(rust) == {"Core", "OuterTarget", "BODY"}
    assert python == rust
    assert python["Core"] == tg119_case.structure("Core").voxel_count
    grid = tg119_case.grid
    assert grid.shape == tuple(reversed(inspected["dims"]))  # [z, y, x]
    assert grid.spacing_mm == tuple(inspected["spacing_mm"])
    assert grid.origin_mm == tuple(inspected["origin_mm"])
    assert tg119_case.ct_hu.shape == grid.shape
    assert tg119_case.ct_hu.dtype == np.float32
    assert float(tg119_case.ct_hu.min()) == inspected["hu_min"]
    assert float(tg119_case.ct_hu.max()) == inspected["hu_max"]


def test_mask_is_placed_in_patient_coordinates(tg119_case):
    # The Core's voxel centres, placed by the Grid, span the bounding box the Rust inspection
    # reports (LPS mm): the [z, y, x] order and the origin/spacing agree.
    core = tg119_case.mask("Core")
    z, y, x = np.nonzero(core)
    zs, ys, xs = tg119_case.grid.axes_mm()
    bbox = next(s["bbox_mm"] for s in tg119_case.inspect()["structures"] if s["name"] == "Core")
    assert [xs[x].min(), ys[y].min(), zs[z].min()] == pytest.approx(bbox[0], abs=1e-9)
    assert [xs[x].max(), ys[y].max(), zs[z].max()] == pytest.approx(bbox[1], abs=1e-9)
    # The affine maps index (x, y, z) to the same point.
    p = tg119_case.grid.affine_lps() @ np.array([x[0], y[0], z[0], 1.0])
    assert p[:3] == pytest.approx([xs[x[0]], ys[y[0]], zs[z[0]]])


def test_missing_case_folder_raises_with_the_path(tmp_path):
    missing = tmp_path / "no-such-case"
    with pytest.raises(rtopt.RtoptError) as e:
        rtopt.Case.load(missing)
    assert str(missing) in str(e.value)
    assert isinstance(e.value, (rtopt.InputError, rtopt.FileError))


def test_folder_without_ct_is_an_input_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(rtopt.InputError) as e:
        rtopt.Case.load(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_bad_protocol_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.toml"
    text = TG119_PROTOCOL.read_text().replace("[prescription]", "[prescription]\nunknown_key = 1", 1)
    bad.write_text(text)
    with pytest.raises(rtopt.InputError) as e:
        rtopt.Protocol.load(bad)
    assert str(bad) in str(e.value)
    assert "unknown_key" in str(e.value)
    # The unknown key sits on the line after [prescription] (1-based).
    line = text.splitlines().index("[prescription]") + 2
    assert f"line {line}," in str(e.value)


def test_missing_protocol_file_names_it(tmp_path):
    with pytest.raises(rtopt.RtoptError) as e:
        rtopt.Protocol.load(tmp_path / "absent.toml")
    assert "absent.toml" in str(e.value)


def test_protocol_from_dict_round_trips_and_validates():
    p = rtopt.Protocol.load(TG119_PROTOCOL)
    d = p.to_dict()
    q = rtopt.Protocol.from_dict(d, name="copy")
    assert q.to_dict() == d
    assert (q.prescription_gy, q.fractions) == (p.prescription_gy, p.fractions)
    d["prescription"]["total_dose_gy"] = -5.0
    with pytest.raises(rtopt.InputError) as e:
        rtopt.Protocol.from_dict(d, name="negative")
    assert "<negative>" in str(e.value)


def test_protocol_naming_an_absent_structure_is_refused_before_computation(tg119_case):
    d = rtopt.Protocol.load(TG119_PROTOCOL).to_dict()
    d["structure"].append({"name": "Rectum", "goals": [{"type": "mean_dose", "weight": 1.0}]})
    protocol = rtopt.Protocol.from_dict(d, name="with-rectum")
    events = []
    with pytest.raises(rtopt.InputError) as e:
        rtopt.Planner(tg119_case, protocol, progress=events.append)
    assert "Rectum" in str(e.value)
    assert events == []  # nothing was computed
