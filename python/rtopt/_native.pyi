"""Type stubs of the extension module rtopt._native (python/src). Use the wrappers in
``rtopt`` rather than these classes directly."""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class RtoptError(Exception): ...
class InputError(RtoptError): ...
class InfeasibleError(RtoptError): ...
class PlanRefusedError(RtoptError): ...
class FileError(RtoptError): ...
class InternalError(RtoptError): ...

_GridGeometry = Tuple[Tuple[int, int, int], List[float], List[float]]

class Structure:
    name: str
    number: int
    interpreted_type: str
    mask: npt.NDArray[np.bool_]
    voxel_count: int
    spacing_mm: List[float]
    origin_mm: List[float]

class Case:
    @staticmethod
    def load(
        path: str,
        series: Optional[str] = None,
        rtstruct: Optional[str] = None,
        assume_hfs: bool = False,
        memory_budget_bytes: Optional[int] = None,
    ) -> Case: ...
    name: str
    structure_names: List[str]
    structures: List[Structure]
    def structure(self, name: str) -> Structure: ...
    ct_hu: npt.NDArray[np.float32]
    shape: Tuple[int, int, int]
    spacing_mm: List[float]
    origin_mm: List[float]
    frame_of_reference_uid: str
    warnings: List[str]
    def inspect_json(self) -> str: ...

class Protocol:
    @staticmethod
    def load(path: str) -> Protocol: ...
    @staticmethod
    def from_toml(text: str, name: str = "protocol") -> Protocol: ...
    @staticmethod
    def from_json(text: str, name: str = "protocol") -> Protocol: ...
    def to_json(self) -> str: ...
    name: str
    path: Optional[Path]
    prescription_gy: float
    fractions: int
    structures: List[str]

class Planner:
    def __init__(
        self,
        case: Case,
        protocol: Protocol,
        *,
        machine: Optional[str] = None,
        ct_calibration: Optional[str] = None,
        threads: Optional[int] = None,
        fidelity_corrections: Optional[int] = None,
        segment_weights: bool = True,
        relax: bool = False,
        normalize: bool = True,
        beam_doses: bool = False,
        plan_label: Optional[str] = None,
        plan_name: Optional[str] = None,
        plan_description: Optional[str] = None,
        source_date_epoch: Optional[str] = None,
        memory_budget_bytes: Optional[int] = None,
        max_mu_per_beam: Optional[float] = None,
        max_mu_per_fraction: Optional[float] = None,
        max_dose_per_fraction_gy: Optional[float] = None,
        normalisation_band: Optional[Tuple[float, float]] = None,
        min_gamma_pass_percent: Optional[float] = None,
        progress: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ) -> None: ...
    def check_output(self, out: str, force: bool = False) -> None: ...
    def prepare(self) -> PreparedPlan: ...
    def stage_counts(self) -> Dict[str, int]: ...

class PreparedPlan:
    def optimise(
        self,
        name: str = "",
        weights: List[Tuple[str, str, float]] = ...,
        doses: List[Tuple[str, str, float]] = ...,
    ) -> OptimisedPlan: ...
    def sequence(self, optimised: OptimisedPlan) -> SequencedPlan: ...
    def finish(self, optimised: OptimisedPlan, sequenced: SequencedPlan) -> PlannedCase: ...
    def influence_csr(
        self,
    ) -> Tuple[
        npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.int32], Tuple[int, int]
    ]: ...
    def dose_grid_voxels(self) -> npt.NDArray[np.uint32]: ...
    dose_grid: _GridGeometry
    n_beamlets: int
    def dose_of(self, weights_mu: List[float]) -> npt.NDArray[np.float64]: ...
    def beams_json(self) -> str: ...
    def stage_counts(self) -> Dict[str, int]: ...
    def structure_rows(
        self, name: str
    ) -> Tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...

class OptimisedPlan:
    name: str
    weights_mu: npt.NDArray[np.float64]
    dose_gy: npt.NDArray[np.float64]
    objective: float
    iterations: int
    status: str
    seconds: float
    def goals_json(self) -> str: ...
    def protocol_json(self) -> str: ...

class SequencedPlan:
    segments_per_beam: List[int]
    total_mu: float
    deliverable_weights_mu: npt.NDArray[np.float64]

class PlannedCase:
    def report_json(self) -> str: ...
    def goal_table(self) -> str: ...
    constraints_met: bool
    all_goals_met: bool
    mu_scale: float
    dose_gy: npt.NDArray[np.float32]
    dose_grid: _GridGeometry
    def write(self, out: str, force: bool = False) -> None: ...
