//! Arguments of `rtopt segment` and `rtopt segment-eval`, mapped onto the library's
//! [`rtopt::segment::task`] requests.

use std::path::PathBuf;

use rtopt::segment::task::{SegmentEvalRequest, SegmentRequest};

/// Arguments of `rtopt segment`.
#[derive(Debug, Clone, clap::Args)]
pub struct SegmentArgs {
    /// Folder with the CT series (and optionally an RT Structure Set to merge with).
    pub folder: PathBuf,
    /// Output RT Structure Set [default: rtstruct-auto.dcm in the current folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// RT Structure Set to merge with (default: the one in the folder, if any).
    #[arg(long)]
    pub rtstruct: Option<PathBuf>,
    /// ONNX segmentation model (the `.onnx` or its sidecar `.json`, contract in
    /// docs/segmentation.md), run after the classical body and lungs.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// SeriesInstanceUID when the folder holds several CT series.
    #[arg(long)]
    pub series: Option<String>,
    /// Replace an existing output file (never an input).
    #[arg(long)]
    pub force: bool,
}

impl SegmentArgs {
    pub fn request(
        &self,
        memory_budget_bytes: u64,
        created: Option<rtopt::io::dicom::identity::CreationTime>,
    ) -> SegmentRequest {
        SegmentRequest {
            created,
            memory_budget_bytes: Some(memory_budget_bytes),
            folder: self.folder.clone(),
            out: self.out.clone(),
            rtstruct: self.rtstruct.clone(),
            model: self.model.clone(),
            series: self.series.clone(),
            force: self.force,
        }
    }
}

/// Arguments of `rtopt segment-eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct SegmentEvalArgs {
    /// Folder with the CT series.
    pub folder: PathBuf,
    /// Reference: an RT Structure Set (.dcm) or a NIfTI label map (.nii / .nii.gz).
    #[arg(long)]
    pub reference: PathBuf,
    /// For a label-map reference: JSON `{"StructureName": [label ids]}` [default: the
    /// TotalSegmentator `total` map of docs/segmentation.md].
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// ONNX segmentation model whose classes are evaluated as well.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

impl SegmentEvalArgs {
    pub fn request(&self, memory_budget_bytes: u64) -> SegmentEvalRequest {
        SegmentEvalRequest {
            memory_budget_bytes: Some(memory_budget_bytes),
            folder: self.folder.clone(),
            reference: self.reference.clone(),
            labels: self.labels.clone(),
            model: self.model.clone(),
        }
    }
}
