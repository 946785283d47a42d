"""rtopt from Python: IMRT treatment-planning optimisation with the speed of the Rust core.

The staged planner of the Rust library, in Python's idiom::

    import rtopt
    case = rtopt.Case.load("data/tg119")
    protocol = rtopt.Protocol.load("data/tg119/protocol.toml")
    prepared = rtopt.Planner(case, protocol).prepare()        # beams + influence matrix, once
    base = prepared.optimise()                                 # the protocol as given
    sparing = prepared.optimise(weights={("Core", "overdose"): 600.0}, name="core x2")
    planned = prepared.finish(base, prepared.sequence(base))   # deliverable dose + report
    planned.write("rtopt-tg119")                               # RTPLAN, RTDOSE, report

Units and frames: doses in Gy total over the course; beamlet weights in MU per fraction; the
influence matrix in Gy per MU for one fraction; positions in DICOM patient coordinates (LPS,
mm). Arrays on a grid are indexed ``[z, y, x]``; :class:`Grid` places them (origin, spacing,
orientation, affine). Long calls release the GIL and stop on Ctrl-C (``KeyboardInterrupt``);
a stopped computation writes nothing, and ``write`` is atomic (the whole folder or none). Errors are :class:`RtoptError` subclasses, one per kind of the
Rust library's errors. See docs/python.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _native
from ._native import (
    FileError,
    InfeasibleError,
    InputError,
    InternalError,
    PlanRefusedError,
    RtoptError,
    Structure,
)

__version__: str = _native.__version__

__all__ = [
    "Case",
    "FileError",
    "Grid",
    "InfeasibleError",
    "InputError",
    "InternalError",
    "OptimisedPlan",
    "PlanRefusedError",
    "PlannedCase",
    "Planner",
    "PreparedPlan",
    "Protocol",
    "RtoptError",
    "SequencedPlan",
    "Structure",
    "plan",
    "refuse_unmet",
]

PathLike = Union[str, "os.PathLike[str]"]
#: A goal change: ``{(structure, goal text): value}`` or ``[(structure, goal text, value)]``.
GoalChanges = Union[Mapping[Tuple[str, str], float], Iterable[Tuple[str, str, float]], None]


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid along the patient axes (DICOM LPS).

    ``shape`` is ``(nz, ny, nx)`` (NumPy order of the arrays on the grid); ``spacing_mm`` and
    ``origin_mm`` are ``(x, y, z)``: voxel size and centre of voxel ``[0, 0, 0]`` in mm.
    """

    shape: Tuple[int, int, int]
    spacing_mm: Tuple[float, float, float]
    origin_mm: Tuple[float, float, float]

    #: ImageOrientationPatient (0020,0037) of every rtopt grid: rows along +x, columns +y.
    image_orientation_patient: Tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    @classmethod
    def _of(cls, geometry: Tuple[Any, Any, Any]) -> "Grid":
        shape, spacing, origin = geometry
        return cls(tuple(int(v) for v in shape), tuple(map(float, spacing)), tuple(map(float, origin)))

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix from voxel indices ``(x, y, z, 1)`` to LPS mm (note: index order x, y, z)."""
        a = np.diag([*self.spacing_mm, 1.0])
        a[:3, 3] = self.origin_mm
        return a

    def image_position_patient(self, z_index: int) -> Tuple[float, float, float]:
        """ImagePositionPatient (0020,0032) of slice ``z_index``: centre of its first voxel, mm."""
        x0, y0, z0 = self.origin_mm
        return (x0, y0, z0 + z_index * self.spacing_mm[2])

    def axes_mm(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates along z, y and x (LPS mm), matching the array axes."""
        nz, ny, nx = self.shape
        sx, sy, sz = self.spacing_mm
        x0, y0, z0 = self.origin_mm
        return (z0 + sz * np.arange(nz), y0 + sy * np.arange(ny), x0 + sx * np.arange(nx))


class Case:
    """A CT series with its RT Structure Set, rasterised on the CT grid."""

    def __init__(self, native: "_native.Case") -> None:
        self._n = native

    @classmethod
    def load(
        cls,
        path: PathLike,
        series: Optional[str] = None,
        rtstruct: Optional[PathLike] = None,
        assume_hfs: bool = False,
        memory_budget_bytes: Optional[int] = None,
    ) -> "Case":
        """Import a case folder (``rtopt inspect`` checks). ``series``: SeriesInstanceUID when
        the folder holds several; ``rtstruct``: the RT Structure Set file when it holds
        several. Raises :class:`InputError` naming the file or tag on bad input."""
        return cls(
            _native.Case.load(
                os.fspath(path),
                series=series,
                rtstruct=None if rtstruct is None else os.fspath(rtstruct),
                assume_hfs=assume_hfs,
                memory_budget_bytes=memory_budget_bytes,
            )
        )

    @property
    def name(self) -> str:
        """The case folder's name (never a patient name)."""
        return self._n.name

    @property
    def grid(self) -> Grid:
        """The CT grid."""
        return Grid(self._n.shape, tuple(self._n.spacing_mm), tuple(self._n.origin_mm))

    @property
    def ct_hu(self) -> np.ndarray:
        """CT numbers in HU, float32 ``[z, y, x]``."""
        return self._n.ct_hu

    @property
    def structure_names(self) -> List[str]:
        return list(self._n.structure_names)

    @property
    def structures(self) -> Dict[str, Structure]:
        """Volumetric structures by name (masks on the CT grid)."""
        return {s.name: s for s in self._n.structures}

    def structure(self, name: str) -> Structure:
        """The structure ``name``; :class:`InputError` lists the names when there is none."""
        return self._n.structure(name)

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask ``[z, y, x]`` of structure ``name`` on the CT grid."""
        return self._n.structure(name).mask

    @property
    def frame_of_reference_uid(self) -> str:
        return self._n.frame_of_reference_uid

    @property
    def warnings(self) -> List[str]:
        return list(self._n.warnings)

    def inspect(self) -> Dict[str, Any]:
        """The summary ``rtopt inspect --json`` prints (structure table, CT, set-aside files)."""
        return json.loads(self._n.inspect_json())

    def __repr__(self) -> str:
        return repr(self._n)


class Protocol:
    """A planning protocol: prescription, beams and goals (format of data/protocols/)."""

    def __init__(self, native: "_native.Protocol") -> None:
        self._n = native

    @classmethod
    def load(cls, path: PathLike) -> "Protocol":
        """Read a TOML protocol file."""
        return cls(_native.Protocol.load(os.fspath(path)))

    @classmethod
    def from_toml(cls, text: str, name: str = "protocol") -> "Protocol":
        return cls(_native.Protocol.from_toml(text, name))

    @classmethod
    def from_dict(cls, protocol: Mapping[str, Any], name: str = "protocol") -> "Protocol":
        """A protocol from a dict of the TOML file's structure, e.g.
        ``{"prescription": {...}, "structure": [{"name": ..., "goals": [...]}]}``."""
        return cls(_native.Protocol.from_json(json.dumps(protocol), name))

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(self._n.to_json())

    @property
    def name(self) -> str:
        return self._n.name

    @property
    def prescription_gy(self) -> float:
        """Prescribed total dose, Gy."""
        return self._n.prescription_gy

    @property
    def fractions(self) -> int:
        return self._n.fractions

    def __repr__(self) -> str:
        return repr(self._n)


def _changes(changes: GoalChanges, what: str) -> List[Tuple[str, str, float]]:
    if changes is None:
        return []
    pairs = (
        [(k, v) for k, v in changes.items()]
        if isinstance(changes, Mapping)
        else [(tuple(item[:2]), item[2]) if len(item) == 3 else (item, None) for item in changes]  # type: ignore[union-attr]
    )
    out: List[Tuple[str, str, float]] = []
    for key, value in pairs:
        if not (isinstance(key, tuple) and len(key) == 2) or value is None:
            raise InputError(f"{what}: each change is (structure, goal text) -> value, got {key!r}")
        try:
            out.append((str(key[0]), str(key[1]), float(value)))
        except (TypeError, ValueError):
            raise InputError(f"{what}: the value of {key!r} is not a number: {value!r}") from None
    return out


class Planner:
    """A planning run of one case and protocol, configured as ``rtopt plan`` is.

    Keyword options (defaults are the command line's): ``machine`` and ``ct_calibration``
    (files), ``threads``, ``fidelity_corrections``, ``segment_weights``, ``relax``,
    ``normalize``, ``beam_doses``, ``plan_label``, ``plan_name``, ``plan_description``,
    ``source_date_epoch`` (else the SOURCE_DATE_EPOCH environment variable),
    ``memory_budget_bytes``, and the acceptance limits ``max_mu_per_beam``,
    ``max_mu_per_fraction``, ``max_dose_per_fraction_gy``, ``normalisation_band`` (low,
    high) and ``min_gamma_pass_percent``. ``progress`` is called with one dict per stage start and finish
    and per solver iteration (``{"event": "iteration", "objective": ..., "gap_rel": ...}``),
    from a worker thread; an exception it raises stops the computation and is re-raised.
    Every check that can fail (structures named by the protocol, limits, plan identity) is
    made here, before any computation.
    """

    def __init__(
        self,
        case: Case,
        protocol: Protocol,
        *,
        progress: Optional[Callable[[Dict[str, Any]], Any]] = None,
        **options: Any,
    ) -> None:
        for key in ("machine", "ct_calibration"):
            if options.get(key) is not None:
                options[key] = os.fspath(options[key])
        if options.get("source_date_epoch") is not None:
            options["source_date_epoch"] = str(options["source_date_epoch"])
        self._n = _native.Planner(case._n, protocol._n, progress=progress, **options)

    def check_output(self, out: PathLike, force: bool = False) -> None:
        """Raise :class:`InputError` now if :meth:`PlannedCase.write` could not write ``out``."""
        self._n.check_output(os.fspath(out), force)

    def prepare(self) -> "PreparedPlan":
        """Stage 1: beams, the influence matrix and the optimisation problem (once)."""
        return PreparedPlan(self._n.prepare())


class PreparedPlan:
    """Beams, influence matrix and problem of a case; optimise any number of variants."""

    def __init__(self, native: "_native.PreparedPlan") -> None:
        self._n = native

    def optimise(
        self,
        weights: GoalChanges = None,
        doses: GoalChanges = None,
        name: str = "",
    ) -> "OptimisedPlan":
        """Stage 2: optimise the protocol with changed goals, without rebuilding anything.

        ``weights={("Core", "overdose"): 40.0}`` gives the first Core goal whose description
        contains "overdose" the weight 40; ``doses={("Core", "D10"): 20.0}`` moves a goal's
        dose (Gy total). Returns weights and dose as NumPy arrays, goals as dicts.
        """
        return OptimisedPlan(
            self._n.optimise(name, _changes(weights, "weights"), _changes(doses, "doses"))
        )

    optimize = optimise

    def sequence(self, optimised: "OptimisedPlan") -> "SequencedPlan":
        """Stage 3: MLC leaf sequencing and the segment-weight optimisation."""
        return SequencedPlan(self._n.sequence(optimised._n))

    def finish(self, optimised: "OptimisedPlan", sequenced: "SequencedPlan") -> "PlannedCase":
        """Stage 4: deliverable dose, normalisation, gamma, acceptance, report.
        Raises :class:`PlanRefusedError` for a plan no clinic would accept."""
        return PlannedCase(self._n.finish(optimised._n, sequenced._n))

    def influence_matrix(self) -> Any:
        """The optimisation influence matrix as ``scipy.sparse.csr_matrix`` (float32, Gy per MU
        for one fraction): rows are the dose-grid voxels of :meth:`dose_grid_voxels`, columns
        the beamlets. One copy of the Rust matrix; SciPy keeps the arrays without another.

        It is the matrix as it stands: before any :meth:`optimise`, the scatter-corrected
        matrix of :meth:`Planner.prepare`; after one, that variant's matrix with the
        dose-fidelity loop's row factors, so ``A @ plan.weights_mu * fractions`` is the last
        variant's ``dose_gy`` (on the matrix rows)."""
        import scipy.sparse

        data, indices, indptr, shape = self._n.influence_csr()
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=shape, copy=False)

    def influence_csr(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]]:
        """The influence matrix as CSR arrays ``(data, indices, indptr, shape)`` (no SciPy)."""
        return self._n.influence_csr()

    def dose_grid_voxels(self) -> np.ndarray:
        """Linear index (``x + nx * (y + ny * z)``) in :attr:`dose_grid` of each matrix row."""
        return self._n.dose_grid_voxels()

    @property
    def dose_grid(self) -> Grid:
        return Grid._of(self._n.dose_grid)

    @property
    def n_beamlets(self) -> int:
        return self._n.n_beamlets

    @property
    def beams(self) -> List[Dict[str, Any]]:
        """Beams: number, name, IEC 61217 angles (deg), isocentre (LPS mm), columns."""
        return json.loads(self._n.beams_json())

    def dose_of(self, weights_mu: Union[np.ndarray, List[float]]) -> np.ndarray:
        """Total dose (Gy) of beamlet weights (MU per fraction) through the matrix as it
        stands (see :meth:`influence_matrix`), on the full dose grid ``[z, y, x]``."""
        return self._n.dose_of(np.asarray(weights_mu, dtype=np.float64).tolist())

    def stage_counts(self) -> Dict[str, int]:
        """How often each stage ran on this plan (e.g. ``"dose influence matrix": 1``)."""
        return dict(self._n.stage_counts())

    def structure_rows(self, name: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Structure ``name``'s rows of the influence matrix as the optimiser uses them:
        ``(rows, weighted_rows, weights)``: rows whose dose voxel's centre is inside (max/min
        limits), and every row it occupies with the occupied fraction (volume averages)."""
        return self._n.structure_rows(name)


class OptimisedPlan:
    """An optimised variant."""

    def __init__(self, native: "_native.OptimisedPlan") -> None:
        self._n = native

    @property
    def name(self) -> str:
        return self._n.name

    @property
    def weights_mu(self) -> np.ndarray:
        """Beamlet weights, MU per fraction."""
        return self._n.weights_mu

    @property
    def dose_gy(self) -> np.ndarray:
        """The optimiser's dose, Gy over the course, on the dose grid ``[z, y, x]``."""
        return self._n.dose_gy

    @property
    def objective(self) -> float:
        return self._n.objective

    @property
    def iterations(self) -> int:
        return self._n.iterations

    @property
    def status(self) -> str:
        return self._n.status

    @property
    def seconds(self) -> float:
        return self._n.seconds

    @property
    def goals(self) -> List[Dict[str, Any]]:
        """One dict per goal (structure, description, role, limit_gy, achieved_gy, met,
        objective_value, objective_per_gy, ...): ``pandas.DataFrame(plan.goals)`` works."""
        return json.loads(self._n.goals_json())

    @property
    def protocol(self) -> Dict[str, Any]:
        """The variant's protocol."""
        return json.loads(self._n.protocol_json())


class SequencedPlan:
    """MLC segments of an optimised variant, before normalisation."""

    def __init__(self, native: "_native.SequencedPlan") -> None:
        self._n = native

    @property
    def segments_per_beam(self) -> List[int]:
        return list(self._n.segments_per_beam)

    @property
    def total_mu(self) -> float:
        """MU per fraction before normalisation."""
        return self._n.total_mu

    @property
    def deliverable_weights_mu(self) -> np.ndarray:
        return self._n.deliverable_weights_mu


class PlannedCase:
    """A finished plan: deliverable dose, report, and the DICOM files it writes."""

    def __init__(self, native: "_native.PlannedCase") -> None:
        self._n = native
        self._report: Optional[Dict[str, Any]] = None

    @property
    def report(self) -> Dict[str, Any]:
        """``report.json``'s content."""
        if self._report is None:
            self._report = json.loads(self._n.report_json())
        return self._report

    @property
    def goals(self) -> List[Dict[str, Any]]:
        """The goal table rows on the deliverable dose (one dict per goal)."""
        return list(self.report["goals"])

    def dvh(self) -> List[Dict[str, Any]]:
        """Cumulative DVHs in long form: one row per point ``{structure, dose_gy,
        volume_pct}`` (``pandas.DataFrame(planned.dvh())``)."""
        return [
            {"structure": c["structure"], "dose_gy": p["dose_gy"], "volume_pct": p["volume_pct"]}
            for c in self.report["dvh"]
            for p in c["points"]
        ]

    def goal_table(self) -> str:
        """The goal table as ``rtopt plan`` prints it."""
        return self._n.goal_table()

    @property
    def constraints_met(self) -> bool:
        return self._n.constraints_met

    @property
    def all_goals_met(self) -> bool:
        return self._n.all_goals_met

    @property
    def mu_scale(self) -> float:
        """MU factor of the deliverable normalisation."""
        return self._n.mu_scale

    @property
    def dose_gy(self) -> np.ndarray:
        """The deliverable dose (RTDOSE's), Gy over the course, float32 ``[z, y, x]``."""
        return self._n.dose_gy

    @property
    def dose_grid(self) -> Grid:
        return Grid._of(self._n.dose_grid)

    def write(self, out: PathLike, force: bool = False) -> None:
        """Write RTPLAN, RTDOSE and the report into the folder ``out`` atomically; an
        existing folder is replaced only with ``force`` and only if rtopt wrote it."""
        self._n.write(os.fspath(out), force)


def refuse_unmet(planned: PlannedCase, strict: bool = False) -> None:
    """Raise :class:`PlanRefusedError` (with the plan as ``.planned``) when a hard goal is not
    met on the deliverable dose, or with ``strict`` a report-only goal: the cases in which
    ``rtopt plan`` exits 4 after writing the files for review."""
    unmet = [
        f"{g['structure']} {g['goal']} ({g['achieved']:.2f} {g['unit']})"
        for g in planned.goals
        if g["met"] is False and (strict or g["kind"] == "constraint")
    ]
    if not planned.constraints_met or (strict and not planned.all_goals_met):
        what = "goals" if strict else "hard goals"
        err = PlanRefusedError(f"{what} not met on the deliverable dose: {'; '.join(unmet)}")
        err.planned = planned  # type: ignore[attr-defined]
        raise err


def plan(
    case: Case,
    protocol: Protocol,
    out: Optional[PathLike] = None,
    force: bool = False,
    strict: bool = False,
    **options: Any,
) -> PlannedCase:
    """The whole pipeline once, as ``rtopt plan`` runs it: the output folder is checked
    before any computation, then prepare, optimise, sequence, finish and (with ``out``)
    write. As the command line exits 4, :func:`refuse_unmet` then raises
    :class:`PlanRefusedError` when a hard goal (with ``strict``, any goal) is not met on the
    deliverable dose; the files stay written for review. Options as for :class:`Planner`."""
    planner = Planner(case, protocol, **options)
    if out is not None:
        planner.check_output(out, force)
    prepared = planner.prepare()
    optimised = prepared.optimise()
    planned = prepared.finish(optimised, prepared.sequence(optimised))
    if out is not None:
        planned.write(out, force)
    refuse_unmet(planned, strict)
    return planned
