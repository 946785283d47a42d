//! Segmentation: classical body outline (and, in time, model-based organs at risk).

pub mod body;
