//! ONNX segmentation models run in-process through `ort`.
//!
//! Backend ([`BackendChoice`], once per process): the pure-Rust tract runtime (`ort-tract`) by
//! default, so `cargo build` alone works offline; ONNX Runtime when `ORT_DYLIB_PATH` names a
//! `libonnxruntime` (e.g. from the PyPI `onnxruntime` wheel, version >= 1.24) or when the
//! library is chosen with [`init_backend`].
//!
//! Every model comes with a sidecar JSON, the contract ([`ModelSpec`], `docs/segmentation.md`):
//! `NAME.onnx` + `NAME.json` in the same folder. [`SegmentationModel::load`] accepts either
//! path. Geometry: the model sees axial slices resampled to its in-plane spacing on an H x W
//! canvas, rows along +y and columns along +x of the DICOM patient frame (LPS).

use std::path::{Path, PathBuf};
#[cfg(feature = "onnx")]
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[cfg(feature = "onnx")]
use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::geometry::Mask;

/// Largest canvas side accepted from a sidecar, pixels (bounds the memory a sidecar can ask for).
pub const MAX_CANVAS_PX: usize = 2048;
/// Largest batch accepted from a sidecar, slices per inference call.
pub const MAX_BATCH: usize = 256;

/// Sidecar format identifier.
pub const SIDECAR_FORMAT: &str = "rtopt-segmentation-model/1";

/// The model contract (sidecar JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Must be [`SIDECAR_FORMAT`].
    pub format: String,
    pub name: String,
    /// ONNX file name, relative to the sidecar's folder.
    pub onnx_file: String,
    /// ONNX opset the file was exported with.
    pub opset: i64,
    pub input: InputSpec,
    /// Output tensor name: logits `N x C x H x W`, C = number of classes (index 0 background).
    pub output_name: String,
    pub classes: Vec<ClassSpec>,
    /// Free text: training data, licence, "not for clinical use".
    #[serde(default)]
    pub description: String,
}

/// Input contract of a 2D axial model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    /// Only `"NCHW"` (N axial slices, 1 channel, H rows along +y, W columns along +x).
    pub layout: String,
    /// Only `"axial-2d"`.
    pub kind: String,
    pub height: usize,
    pub width: usize,
    /// In-plane pixel spacing the model expects, mm: `[x (columns), y (rows)]`.
    pub spacing_mm: [f64; 2],
    /// HU window: `x = (clamp(HU, w0, w1) - w0) / (w1 - w0)`.
    pub hu_window: [f32; 2],
    /// HU used outside the CT's field of view.
    pub pad_hu: f32,
    /// Slices per inference call.
    pub batch: usize,
}

/// One output class and its post-processing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSpec {
    pub index: usize,
    /// ROI name written to the RTSTRUCT.
    pub name: String,
    /// RTROIInterpretedType, e.g. `ORGAN`, `EXTERNAL`.
    pub interpreted_type: String,
    pub color: [u8; 3],
    /// Keep this many largest 3D components (0: keep all).
    pub components: usize,
    /// Fill enclosed holes slice by slice.
    pub fill_holes: bool,
    /// Drop components smaller than this, cm3.
    #[serde(default)]
    pub min_volume_cm3: f64,
}

/// Which runtime executes the models of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Backend {
    /// Pure-Rust tract (`ort-tract`; the default, needs nothing installed).
    Tract,
    /// ONNX Runtime, loaded at run time from a `libonnxruntime` shared library.
    OnnxRuntime,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Tract => "tract (pure Rust)",
            Backend::OnnxRuntime => "ONNX Runtime",
        })
    }
}

/// How to choose the backend (once per process: `ort` keeps one global API table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// ONNX Runtime when the environment variable `ORT_DYLIB_PATH` names a library,
    /// otherwise tract. This is what [`SegmentationModel::load`] uses when no backend was
    /// chosen before.
    FromEnv,
    /// The pure-Rust tract runtime.
    Tract,
    /// ONNX Runtime from this shared library (version >= 1.24, e.g. the PyPI wheel's
    /// `onnxruntime/capi/libonnxruntime.so.*`).
    OnnxRuntime(PathBuf),
}

#[cfg(feature = "onnx")]
type EnvSlot = std::result::Result<(ort::environment::Environment, Backend), String>;

#[cfg(feature = "onnx")]
static ENV: OnceLock<EnvSlot> = OnceLock::new();

#[cfg(feature = "onnx")]
fn create_environment(choice: &BackendChoice) -> EnvSlot {
    let lib = match choice {
        BackendChoice::Tract => None,
        BackendChoice::OnnxRuntime(p) => Some(p.clone()),
        BackendChoice::FromEnv => std::env::var_os("ORT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    };
    let backend = match lib {
        Some(p) => {
            load_onnxruntime(&p)?;
            Backend::OnnxRuntime
        }
        None => {
            ort::set_api(ort_tract::api());
            Backend::Tract
        }
    };
    let env = ort::init()
        .with_name("rtopt")
        .build()
        .map_err(|e| format!("cannot create the ONNX environment ({backend}): {e}"))?;
    Ok((env, backend))
}

/// Choose the backend for this process. The first call (or the first model load) decides;
/// a later call asking for another backend is refused, since `ort` cannot switch.
#[cfg(feature = "onnx")]
pub fn init_backend(choice: BackendChoice) -> Result<Backend> {
    let slot = ENV.get_or_init(|| create_environment(&choice));
    let (_, have) = slot.as_ref().map_err(|e| Error::Invalid(e.clone()))?;
    let wanted = match &choice {
        BackendChoice::FromEnv => None,
        BackendChoice::Tract => Some(Backend::Tract),
        BackendChoice::OnnxRuntime(_) => Some(Backend::OnnxRuntime),
    };
    match wanted {
        Some(w) if w != *have => Err(Error::Invalid(format!(
            "the ONNX backend of this process is already {have}; {w} cannot be selected as well"
        ))),
        _ => Ok(*have),
    }
}

#[cfg(feature = "onnx")]
fn environment() -> Result<&'static ort::environment::Environment> {
    init_backend(BackendChoice::FromEnv)?;
    match ENV.get() {
        Some(Ok((env, _))) => Ok(env),
        Some(Err(e)) => Err(Error::Invalid(e.clone())),
        None => Err(Error::Invalid("ONNX environment not initialised".into())),
    }
}

#[cfg(feature = "onnx")]
fn load_onnxruntime(path: &Path) -> std::result::Result<(), String> {
    // SAFETY: loading a shared library runs its initialisers; the path is the caller's explicit
    // choice. The library is never unloaded (forgotten), so the function pointers copied into
    // ort's global API table stay valid for the life of the process. The symbol's signature is
    // ONNX Runtime's documented C entry point `const OrtApiBase* OrtGetApiBase(void)`.
    unsafe {
        let lib = libloading::Library::new(path)
            .map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", path.display()))?;
        let get: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").map_err(|e| {
                format!(
                    "{}: no OrtGetApiBase symbol ({e}); not an ONNX Runtime library",
                    path.display()
                )
            })?;
        let base = get();
        if base.is_null() {
            return Err(format!("{}: OrtGetApiBase returned null", path.display()));
        }
        let api = ((*base).GetApi)(ort::sys::ORT_API_VERSION);
        if api.is_null() {
            return Err(format!(
                "{}: this ONNX Runtime does not provide C API version {} (needs ONNX Runtime >= 1.{})",
                path.display(),
                ort::sys::ORT_API_VERSION,
                ort::sys::ORT_API_VERSION
            ));
        }
        ort::set_api((*api).clone());
        std::mem::forget(lib);
    }
    Ok(())
}

#[cfg(feature = "onnx")]
/// A loaded model: contract + session.
pub struct SegmentationModel {
    pub spec: ModelSpec,
    pub onnx_path: PathBuf,
    pub sidecar_path: PathBuf,
    pub backend: Backend,
    session: ort::session::Session,
}

#[cfg(feature = "onnx")]
impl std::fmt::Debug for SegmentationModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentationModel")
            .field("name", &self.spec.name)
            .field("onnx_path", &self.onnx_path)
            .field("backend", &self.backend)
            .finish()
    }
}

fn cfg_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Read and validate a sidecar (does not open the ONNX file).
pub fn read_sidecar(sidecar: &Path) -> Result<ModelSpec> {
    let text = std::fs::read_to_string(sidecar).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            cfg_err(
                sidecar,
                "model sidecar JSON not found; every ONNX model needs a sidecar describing its input and classes (see docs/segmentation.md)",
            )
        } else {
            Error::io(sidecar, e)
        }
    })?;
    let spec: ModelSpec = serde_json::from_str(&text)
        .map_err(|e| cfg_err(sidecar, format!("invalid model sidecar: {e}")))?;
    if spec.format != SIDECAR_FORMAT {
        return Err(cfg_err(
            sidecar,
            format!("format '{}', expected '{SIDECAR_FORMAT}'", spec.format),
        ));
    }
    let i = &spec.input;
    if i.layout != "NCHW" || i.kind != "axial-2d" {
        return Err(cfg_err(
            sidecar,
            format!(
                "input layout '{}' kind '{}': only NCHW axial-2d models are supported",
                i.layout, i.kind
            ),
        ));
    }
    if !(1..=MAX_CANVAS_PX).contains(&i.height)
        || !(1..=MAX_CANVAS_PX).contains(&i.width)
        || !(1..=MAX_BATCH).contains(&i.batch)
    {
        return Err(cfg_err(
            sidecar,
            format!(
                "input height {} and width {} must be 1..={MAX_CANVAS_PX}, batch {} 1..={MAX_BATCH}",
                i.height, i.width, i.batch
            ),
        ));
    }
    if !(i.spacing_mm.iter().all(|s| s.is_finite() && *s > 0.0)) {
        return Err(cfg_err(sidecar, "input spacing_mm must be positive"));
    }
    if i.hu_window.iter().any(|v| !v.is_finite()) || i.hu_window[1] <= i.hu_window[0] {
        return Err(cfg_err(
            sidecar,
            "hu_window must be [low, high] with low < high",
        ));
    }
    for (n, c) in spec.classes.iter().enumerate() {
        if c.index != n {
            return Err(cfg_err(
                sidecar,
                format!(
                    "classes must be listed in index order 0, 1, ...; entry {n} has index {}",
                    c.index
                ),
            ));
        }
    }
    for c in spec.classes.iter().skip(1) {
        // They become ROIName (LO: 1-64 characters, no backslash) and RTROIInterpretedType
        // (CS: at most 16 of A-Z, 0-9, space, underscore) in the written RT Structure Set.
        if c.name.trim().is_empty() || c.name.chars().count() > 64 || c.name.contains('\\') {
            return Err(cfg_err(
                sidecar,
                format!(
                    "class {} name '{}' must have 1 to 64 characters and no backslash",
                    c.index, c.name
                ),
            ));
        }
        let cs_ok = c.interpreted_type.len() <= 16
            && c.interpreted_type
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_');
        if !cs_ok {
            return Err(cfg_err(
                sidecar,
                format!(
                    "class {} interpreted_type '{}' is not a DICOM code string (at most 16 of A-Z, 0-9, space, _)",
                    c.index, c.interpreted_type
                ),
            ));
        }
    }
    if spec.classes.len() > 255 {
        return Err(cfg_err(sidecar, "at most 255 classes are supported"));
    }
    if spec.classes.len() < 2 {
        return Err(cfg_err(
            sidecar,
            "a model needs background + at least one class",
        ));
    }
    Ok(spec)
}

#[cfg(feature = "onnx")]
impl SegmentationModel {
    /// Load `path` (the `.onnx` or its sidecar `.json`). Errors name the offending file: a
    /// missing sidecar, an unreadable or corrupt ONNX file, or an input shape that disagrees
    /// with the sidecar.
    pub fn load(path: &Path) -> Result<SegmentationModel> {
        let sidecar_path = if path.extension().is_some_and(|e| e == "json") {
            path.to_path_buf()
        } else {
            if !path.exists() {
                return Err(cfg_err(path, "model file not found"));
            }
            path.with_extension("json")
        };
        let spec = read_sidecar(&sidecar_path)?;
        let onnx_path = sidecar_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&spec.onnx_file);
        let bytes = std::fs::read(&onnx_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                cfg_err(
                    &onnx_path,
                    "model file not found (named by the sidecar's onnx_file)",
                )
            } else {
                Error::io(&onnx_path, e)
            }
        })?;
        let env = environment()?;
        let backend = init_backend(BackendChoice::FromEnv)?;
        let session = ort::session::Session::builder(env)
            .and_then(|b| {
                b.with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .map_err(|e| cfg_err(&onnx_path, format!("not a loadable ONNX model: {e}")))?;
        let i = &spec.input;
        let input = session
            .inputs()
            .iter()
            .find(|o| o.name() == i.name)
            .ok_or_else(|| {
                cfg_err(
                    &onnx_path,
                    format!(
                        "no input named '{}' (the sidecar's input.name); inputs: {}",
                        i.name,
                        session
                            .inputs()
                            .iter()
                            .map(|o| o.name().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        if let Some(shape) = input.dtype().tensor_shape() {
            let dims: Vec<i64> = shape.iter().copied().collect();
            let want = [-1, 1, i.height as i64, i.width as i64];
            let ok = dims.len() == 4
                && dims
                    .iter()
                    .zip(want)
                    .enumerate()
                    .all(|(a, (&d, w))| d < 0 || (a == 0) || d == w);
            if !ok {
                return Err(cfg_err(
                    &onnx_path,
                    format!(
                        "input '{}' has shape {dims:?}; the sidecar requires [N, 1, {}, {}]",
                        i.name, i.height, i.width
                    ),
                ));
            }
            if dims
                .first()
                .is_some_and(|&n| n > 0 && n as usize != i.batch)
            {
                return Err(cfg_err(
                    &onnx_path,
                    format!(
                        "input '{}' has a fixed batch of {} slices; the sidecar's input.batch is {}",
                        i.name, dims[0], i.batch
                    ),
                ));
            }
        }
        if !session
            .outputs()
            .iter()
            .any(|o| o.name() == spec.output_name)
        {
            return Err(cfg_err(
                &onnx_path,
                format!(
                    "no output named '{}' (the sidecar's output_name)",
                    spec.output_name
                ),
            ));
        }
        Ok(SegmentationModel {
            spec,
            onnx_path,
            sidecar_path,
            backend,
            session,
        })
    }

    /// Run the network on `n` prepared input slices (`n * H * W` values, already normalised);
    /// returns logits `n * C * H * W`.
    pub fn run_raw(&mut self, input: Vec<f32>, n: usize) -> Result<Vec<f32>> {
        let (h, w) = (self.spec.input.height, self.spec.input.width);
        if input.len() != n * h * w {
            return Err(Error::Invalid(format!(
                "model input has {} values, expected {n} x {h} x {w}",
                input.len()
            )));
        }
        let c = self.spec.classes.len();
        let tensor = ort::value::Tensor::from_array((vec![n as i64, 1, h as i64, w as i64], input))
            .map_err(|e| cfg_err(&self.onnx_path, format!("input tensor: {e}")))?;
        let name = self.spec.input.name.clone();
        let out_name = self.spec.output_name.clone();
        let path = self.onnx_path.clone();
        let outputs = self
            .session
            .run(ort::inputs![name.as_str() => tensor])
            .map_err(|e| cfg_err(&path, format!("inference failed: {e}")))?;
        let (shape, data) = outputs[out_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| cfg_err(&path, format!("output '{out_name}': {e}")))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims != [n as i64, c as i64, h as i64, w as i64] {
            return Err(cfg_err(
                &path,
                format!(
                    "output '{out_name}' has shape {dims:?}, expected [{n}, {c}, {h}, {w}] ({c} classes in the sidecar)"
                ),
            ));
        }
        Ok(data.to_vec())
    }

    /// Segment a CT. `centre_mm` is the preferred in-plane canvas centre (LPS x, y; the body
    /// centroid, as in training) and `field_mm` = (low corner, high corner), LPS x and y in mm,
    /// the in-plane region that must be covered, e.g. the body outline's bounding box. When one
    /// canvas (H x W at the model's spacing) centred on `centre_mm` covers the field it is the
    /// only one; otherwise overlapping canvases ([`tile_centres`]) cover it and their logits
    /// are blended with Gaussian weights centred on each canvas. Per slice: resample onto each
    /// canvas (bilinear, HU), normalise, infer, interpolate the logits back to the CT voxel
    /// centres (bilinear), blend, argmax; restrict to `within` (e.g. the body outline) when
    /// given, then post-process per class. Returns one mask per class (index 1..C).
    pub fn segment(
        &mut self,
        ct: &CtVolume,
        centre_mm: [f64; 2],
        field_mm: ([f64; 2], [f64; 2]),
        within: Option<&Mask>,
    ) -> Result<Vec<(ClassSpec, Mask)>> {
        use rayon::prelude::*;
        let g = ct.grid;
        let [nx, ny, nz] = g.dims;
        let spec = self.spec.input.clone();
        let (h, w) = (spec.height, spec.width);
        let c = self.spec.classes.len();
        let (lo, hi) = field_mm;
        let tiles_x = tile_centres(centre_mm[0], lo[0], hi[0], w as f64 * spec.spacing_mm[0]);
        let tiles_y = tile_centres(centre_mm[1], lo[1], hi[1], h as f64 * spec.spacing_mm[1]);
        let mut labels = vec![0u8; g.len()];
        let plane = nx * ny;
        let mut k0 = 0;
        while k0 < nz {
            let n = spec.batch.min(nz - k0);
            // Blended logits and weight sums for this batch of slices.
            let mut acc = vec![0.0f32; n * c * plane];
            let mut wsum = vec![0.0f32; n * plane];
            for &ty in &tiles_y {
                for &tx in &tiles_x {
                    // Centre of canvas pixel (u, v) in LPS mm: x0 + u * sx, y0 + v * sy.
                    let x0 = tx - 0.5 * (w as f64 - 1.0) * spec.spacing_mm[0];
                    let y0 = ty - 0.5 * (h as f64 - 1.0) * spec.spacing_mm[1];
                    let mut input = vec![0.0f32; n * h * w];
                    input
                        .par_chunks_mut(h * w)
                        .enumerate()
                        .for_each(|(b, canvas)| {
                            let hu = &ct.hu[(k0 + b) * plane..(k0 + b + 1) * plane];
                            for v in 0..h {
                                let fy = (y0 + v as f64 * spec.spacing_mm[1] - g.origin_mm[1])
                                    / g.spacing_mm[1];
                                for u in 0..w {
                                    let fx = (x0 + u as f64 * spec.spacing_mm[0] - g.origin_mm[0])
                                        / g.spacing_mm[0];
                                    let val = bilinear(hu, nx, ny, fx, fy, spec.pad_hu);
                                    canvas[v * w + u] = normalise(val, spec.hu_window);
                                }
                            }
                        });
                    let logits = self.run_raw(input, n)?;
                    acc.par_chunks_mut(c * plane)
                        .zip(wsum.par_chunks_mut(plane))
                        .enumerate()
                        .for_each(|(b, (acc, wsum))| {
                            for j in 0..ny {
                                let y = g.origin_mm[1] + j as f64 * g.spacing_mm[1];
                                let fv = (y - y0) / spec.spacing_mm[1];
                                let wv = taper(fv, h);
                                if wv <= 0.0 {
                                    continue;
                                }
                                for i in 0..nx {
                                    let x = g.origin_mm[0] + i as f64 * g.spacing_mm[0];
                                    let fu = (x - x0) / spec.spacing_mm[0];
                                    let wu = taper(fu, w);
                                    if wu <= 0.0 {
                                        continue; // outside this canvas
                                    }
                                    let weight = wu * wv;
                                    let p = j * nx + i;
                                    wsum[p] += weight;
                                    for ch in 0..c {
                                        let base = (b * c + ch) * h * w;
                                        let l = bilinear(
                                            &logits[base..base + h * w],
                                            w,
                                            h,
                                            fu,
                                            fv,
                                            0.0,
                                        );
                                        acc[ch * plane + p] += weight * l;
                                    }
                                }
                            }
                        });
                }
            }
            labels[k0 * plane..(k0 + n) * plane]
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(b, out)| {
                    let acc = &acc[b * c * plane..(b + 1) * c * plane];
                    let wsum = &wsum[b * plane..(b + 1) * plane];
                    let mut l = vec![0.0f32; c];
                    for (p, o) in out.iter_mut().enumerate() {
                        if wsum[p] <= 0.0 {
                            continue; // no canvas covers this voxel: background
                        }
                        for (ch, lv) in l.iter_mut().enumerate() {
                            *lv = acc[ch * plane + p];
                        }
                        *o = argmax(&l) as u8;
                    }
                });
            k0 += n;
        }
        let mut out = Vec::new();
        for cls in self.spec.classes.iter().skip(1) {
            let mut m = Mask::empty(g);
            for (p, &lab) in labels.iter().enumerate() {
                m.inside[p] = lab as usize == cls.index && within.is_none_or(|w| w.inside[p]);
            }
            out.push((cls.clone(), postprocess(&m, cls)));
        }
        Ok(out)
    }
}

/// Centres (mm, along one axis) of the canvases that cover the field `[lo_mm, hi_mm]` with
/// canvases `canvas_mm` wide. The model expects the patient centred, as in training, so the
/// first canvas sits at `centre_mm`, moved only as far as needed to cover the field (or, when
/// the field is wider than a canvas, to stay inside it). A field wider than a canvas gets more
/// canvases on each side, half a canvas apart (nnU-Net's step of 0.5), until it is covered.
pub fn tile_centres(centre_mm: f64, lo_mm: f64, hi_mm: f64, canvas_mm: f64) -> Vec<f64> {
    let usable = canvas_mm > 0.0 && hi_mm > lo_mm && centre_mm.is_finite();
    if !usable {
        return vec![centre_mm];
    }
    let half = 0.5 * canvas_mm;
    let (a, b) = (hi_mm - half, lo_mm + half);
    // Fits: any centre in [hi - half, lo + half] covers the field; otherwise stay inside it.
    let first = if a <= b {
        centre_mm.clamp(a, b)
    } else {
        centre_mm.clamp(b, a)
    };
    let step = half;
    let below = ((first - half - lo_mm) / step).ceil().max(0.0) as usize;
    let above = ((hi_mm - first - half) / step).ceil().max(0.0) as usize;
    (0..below + 1 + above)
        .map(|t| first + (t as f64 - below as f64) * step)
        .collect()
}

/// Blending weight of a canvas at continuous pixel index `f` (0 .. len-1 at pixel centres):
/// 0 outside the canvas (beyond half a pixel), inside a Gaussian centred on the canvas with
/// sigma = len / 8, as nnU-Net's sliding window uses (Isensee et al., Nature Methods 18, 2021):
/// where canvases overlap, the one whose centre is nearest dominates, so each voxel is
/// labelled mostly from the canvas in which it had the most context. Floored at 1e-4 so that a
/// voxel seen by one canvas only keeps that canvas's logits.
#[cfg_attr(not(feature = "onnx"), allow(dead_code))]
fn taper(f: f64, len: usize) -> f32 {
    if f < -0.5 || f > len as f64 - 0.5 {
        return 0.0;
    }
    let sigma = len as f64 / 8.0;
    let d = (f - 0.5 * (len as f64 - 1.0)) / sigma;
    (-0.5 * d * d).exp().max(1e-4) as f32
}

/// Post-processing of one class mask: small components dropped, N largest kept, holes filled.
pub fn postprocess(m: &Mask, cls: &ClassSpec) -> Mask {
    let mut m = m.clone();
    if cls.min_volume_cm3 > 0.0 {
        let v = (cls.min_volume_cm3 / m.grid.voxel_volume_cm3()).ceil() as usize;
        m = crate::geometry::morph::remove_small(&m, v);
    }
    if cls.components > 0 {
        m = crate::geometry::morph::keep_largest(&m, cls.components);
    }
    if cls.fill_holes {
        m = crate::geometry::morph::fill_holes_2d(&m);
    }
    m
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// The documented normalisation: `(clamp(hu, w0, w1) - w0) / (w1 - w0)`.
pub fn normalise(hu: f32, window: [f32; 2]) -> f32 {
    (hu.clamp(window[0], window[1]) - window[0]) / (window[1] - window[0])
}

/// Bilinear sample of a row-major `nx * ny` image at continuous index (fx, fy); points more
/// than half a pixel outside the image take `outside`, points within half a pixel clamp.
pub fn bilinear(img: &[f32], nx: usize, ny: usize, fx: f64, fy: f64, outside: f32) -> f32 {
    if fx < -0.5 || fy < -0.5 || fx > nx as f64 - 0.5 || fy > ny as f64 - 0.5 {
        return outside;
    }
    let fx = fx.clamp(0.0, (nx - 1) as f64);
    let fy = fy.clamp(0.0, (ny - 1) as f64);
    let i0 = (fx.floor() as usize).min(nx.saturating_sub(2));
    let j0 = (fy.floor() as usize).min(ny.saturating_sub(2));
    let (i1, j1) = ((i0 + 1).min(nx - 1), (j0 + 1).min(ny - 1));
    let (tx, ty) = ((fx - i0 as f64) as f32, (fy - j0 as f64) as f32);
    let a = img[j0 * nx + i0] * (1.0 - tx) + img[j0 * nx + i1] * tx;
    let b = img[j1 * nx + i0] * (1.0 - tx) + img[j1 * nx + i1] * tx;
    a * (1.0 - ty) + b * ty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_canvas_when_it_covers_the_field() {
        // Centroid 10 mm off the field's middle; 300 mm field, 384 mm canvas: covered.
        assert_eq!(tile_centres(10.0, -150.0, 150.0, 384.0), vec![10.0]);
    }

    #[test]
    fn a_field_that_fits_moves_the_canvas_just_enough() {
        // 380 mm field, centroid 40 mm off: the canvas moves to +2 mm and covers it.
        assert_eq!(tile_centres(40.0, -190.0, 190.0, 384.0), vec![2.0]);
        assert_eq!(tile_centres(-40.0, -190.0, 190.0, 384.0), vec![-2.0]);
    }

    #[test]
    fn wide_field_is_tiled_at_half_canvas_steps_around_the_centre() {
        let t = tile_centres(0.0, -500.0, 500.0, 384.0);
        // (500 - 192) / 192 = 1.6 -> 2 steps on each side.
        assert_eq!(t, vec![-384.0, -192.0, 0.0, 192.0, 384.0]);
        assert!(t[0] - 192.0 <= -500.0 && t[4] + 192.0 >= 500.0);
        // A centroid near the field's edge: the first canvas stays inside the field.
        let t = tile_centres(480.0, -500.0, 500.0, 384.0);
        assert_eq!(t[t.len() - 1], 308.0);
        assert!(t[0] - 192.0 <= -500.0);
    }

    #[test]
    fn taper_is_zero_outside_gaussian_inside() {
        assert_eq!(taper(-0.6, 128), 0.0);
        assert_eq!(taper(127.6, 128), 0.0);
        // Centre 63.5, sigma 16: at the border (4 sigma) the floor, one sigma off exp(-1/2).
        assert!((taper(-0.5, 128) - (-8.0f64).exp() as f32).abs() < 1e-9);
        assert!((taper(47.5, 128) - (-0.5f64).exp() as f32).abs() < 1e-6);
        assert_eq!(taper(63.5, 128), 1.0);
    }
}
