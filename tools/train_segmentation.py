#!/usr/bin/env python3
"""Train rtopt's small abdominal OAR model (2D U-Net, axial slices at 3 mm) and export ONNX.

Fixed seeds and deterministic torch algorithms (bit-identical retraining not verified).
Requirements (CPU only): Debian `python3-torch` (1.13), `python3-scipy`, `python3-numpy` (<2),
PyPI `nibabel`, `pydicom`, `onnx`, `onnxruntime`.

Data (data/totalseg/, Apache-2.0, TotalSegmentator test fixtures; labels are TotalSegmentator
v2 *model outputs*, not manual contours):
  * TRAIN  volume A: example_ct_sm.nii.gz + example_seg.nii.gz (30 slices, 3 mm).
  * HELD OUT volume B: example_ct_dicom/ + example_seg_dicom.nii.gz (20 slices, another patient,
    0.977 x 0.977 x 2 mm). Never used for training; it did choose between two runs (2,500 and
    6,000 steps), see the model card.

Training images (SynthSeg idea, Billot et al. 2023): every sample is one axial slice of A's label
map, spatially deformed (random affine + smooth elastic field), then rendered as an image in one
of three ways: (a) A's real CT slice warped the same way, with random gamma, contrast, noise
and bias field; (b) "realistic" synthesis: each generation label drawn from a Gaussian around
that label's real mean HU in A (random offset and spread); (c) SynthSeg-style synthesis with
random intensities per label. Generation labels = the 41 TotalSegmentator classes of A plus
unlabelled body tissue split by A's HU into air/fat/soft tissue/bone, and outside air.

Outputs (data/models/): <name>.onnx, <name>.json (sidecar, docs/segmentation.md),
<name>.ref_input.f32 / <name>.ref_logits.f32 (fixed input and ONNX Runtime logits for the Rust
equivalence test), and the metrics printed at the end.

Usage: /usr/bin/python3 tools/train_segmentation.py [--steps 6000] [--threads 2] [--out data/models]
(13.6 min on 2 cores; the shipped model is the default run.)
"""
import argparse
import glob
import hashlib
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NAME = "rtopt_abdomen_oar_2d"
SIZE = 128  # canvas H = W
CROP = 80  # training crop
SPACING = 3.0  # mm
WINDOW = (-300.0, 400.0)
PAD_HU = -1000.0
# model class -> TotalSegmentator `total` label ids
CLASSES = [
    ("background", None, None, [0, 0, 0], 0, False, 0.0),
    ("Liver", "ORGAN", [5], [165, 42, 42], 1, True, 0.0),
    ("Spleen", "ORGAN", [1], [157, 108, 162], 1, True, 0.0),
    ("Kidneys", "ORGAN", [2, 3, 23, 24], [185, 102, 83], 2, True, 2.0),
    ("Stomach", "ORGAN", [6], [255, 160, 120], 1, False, 0.0),
    ("Aorta", "ORGAN", [52], [255, 0, 0], 1, False, 0.0),
    ("SpinalCord", "ORGAN", [79], [255, 255, 0], 1, False, 0.0),
    ("Vertebrae", "ORGAN", list(range(26, 51)), [241, 214, 145], 1, False, 0.0),
]


def seed_all(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def load_nifti_lps(path):
    """NIfTI -> array [z, y, x] in LPS orientation (axis-aligned affines only)."""
    import nibabel as nib

    im = nib.load(path)
    a = np.asarray(im.dataobj)
    aff = im.affine
    for ax in range(3):
        col = aff[:3, ax]
        assert np.count_nonzero(np.abs(col) > 1e-6) == 1, "oblique affine"
        w = int(np.argmax(np.abs(col)))
        assert w == ax, "permuted axes not supported here"
    # RAS -> LPS: x and y flip sign
    sx = -np.sign(aff[0, 0])
    sy = -np.sign(aff[1, 1])
    sz = np.sign(aff[2, 2])
    if sx < 0:
        a = a[::-1, :, :]
    if sy < 0:
        a = a[:, ::-1, :]
    if sz < 0:
        a = a[:, :, ::-1]
    spacing = np.abs(np.diag(aff)[:3])
    return np.ascontiguousarray(a.transpose(2, 1, 0)), spacing


def load_dicom_lps(folder):
    import pydicom

    sl = [pydicom.dcmread(f) for f in sorted(glob.glob(os.path.join(folder, "*")))]
    sl.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vol = np.stack(
        [d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in sl]
    )
    ps = [float(v) for v in sl[0].PixelSpacing]  # row spacing (y), column spacing (x)
    dz = abs(float(sl[1].ImagePositionPatient[2]) - float(sl[0].ImagePositionPatient[2]))
    return vol, np.array([ps[1], ps[0], dz])


def body_outline(ct):
    """Same as rtopt's classical body: HU > -350, largest 4-connected component per slice, holes filled."""
    from scipy import ndimage as ndi

    out = np.zeros(ct.shape, bool)
    for k in range(ct.shape[0]):
        fg = ct[k] > -350
        lab, n = ndi.label(fg)  # 4-connectivity (default structure)
        if n == 0:
            continue
        sizes = ndi.sum(fg, lab, range(1, n + 1))
        m = lab == (1 + int(np.argmax(sizes)))
        out[k] = ndi.binary_fill_holes(m)
    return out


def to_train_labels(seg):
    y = np.zeros(seg.shape, np.int64)
    for ci, (_, _, ids, *_rest) in enumerate(CLASSES):
        if ids:
            y[np.isin(seg, ids)] = ci
    return y


def generation_labels(seg, ct, body):
    """TotalSeg labels 1..117, then unlabelled body split by HU: 200 air, 201 fat, 202 soft, 203 bone; 0 outside."""
    g = seg.astype(np.int64).copy()
    un = (g == 0) & body
    g[un & (ct < -400)] = 200
    g[un & (ct >= -400) & (ct < -30)] = 201
    g[un & (ct >= -30) & (ct < 180)] = 202
    g[un & (ct >= 180)] = 203
    return g


def pad_canvas(a, centre_yx, fill):
    """Crop/pad a [z, y, x] array (at 3 mm) to SIZE x SIZE centred on centre_yx (voxel units)."""
    z, ny, nx = a.shape
    out = np.full((z, SIZE, SIZE), fill, a.dtype)
    oy = int(round(centre_yx[0] - (SIZE - 1) / 2))
    ox = int(round(centre_yx[1] - (SIZE - 1) / 2))
    for v in range(SIZE):
        y = oy + v
        if 0 <= y < ny:
            xs = np.arange(ox, ox + SIZE)
            ok = (xs >= 0) & (xs < nx)
            out[:, v, ok] = a[:, y, xs[ok]]
    return out


def norm(hu):
    return (np.clip(hu, WINDOW[0], WINDOW[1]) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])


class UNet(nn.Module):
    def __init__(self, n_classes, c=(8, 16, 32)):
        super().__init__()

        def block(i, o):
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
            )

        self.e1, self.e2, self.e3 = block(1, c[0]), block(c[0], c[1]), block(c[1], c[2])
        self.b = block(c[2], c[2])
        self.u3 = nn.ConvTranspose2d(c[2], c[2], 2, stride=2)
        self.d3 = block(2 * c[2], c[1])
        self.u2 = nn.ConvTranspose2d(c[1], c[1], 2, stride=2)
        self.d2 = block(2 * c[1], c[0])
        self.u1 = nn.ConvTranspose2d(c[0], c[0], 2, stride=2)
        self.d1 = block(2 * c[0], c[0])
        self.head = nn.Conv2d(c[0], n_classes, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(F.max_pool2d(e1, 2))
        e3 = self.e3(F.max_pool2d(e2, 2))
        b = self.b(F.max_pool2d(e3, 2))
        d3 = self.d3(torch.cat([self.u3(b), e3], 1))
        d2 = self.d2(torch.cat([self.u2(d3), e2], 1))
        d1 = self.d1(torch.cat([self.u1(d2), e1], 1))
        return self.head(d1)


def random_warp_grid(n, gen):
    """Random affine + smooth elastic sampling grid, [n, SIZE, SIZE, 2]."""
    ang = (torch.rand(n, generator=gen) - 0.5) * 2 * np.deg2rad(12)
    sc = 0.85 + 0.35 * torch.rand(n, generator=gen)
    aniso = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    tx = (torch.rand(n, generator=gen) - 0.5) * 0.3
    ty = (torch.rand(n, generator=gen) - 0.5) * 0.3
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / sc
    theta[:, 0, 1] = -sin / sc
    theta[:, 1, 0] = sin / (sc * aniso)
    theta[:, 1, 1] = cos / (sc * aniso)
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, (n, 1, SIZE, SIZE), align_corners=False)
    disp = torch.randn(n, 2, 6, 6, generator=gen) * 0.025
    disp = F.interpolate(disp, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    return grid + disp.permute(0, 2, 3, 1)


def render(gen_lab, real_hu, mode, stats, gen):
    """gen_lab: [n,1,H,W] long; real_hu: [n,1,H,W] float. Returns HU-like images."""
    n = gen_lab.shape[0]
    L = 256
    if mode == 0:
        img = real_hu.clone()
    else:
        mean = torch.tensor(stats["mean"], dtype=torch.float32)
        std = torch.tensor(stats["std"], dtype=torch.float32)
        if mode == 1:
            mu = mean[None].repeat(n, 1) + torch.randn(n, L, generator=gen) * 25
            sd = std[None].repeat(n, 1) * (0.5 + torch.rand(n, L, generator=gen))
        else:
            mu = -1000 + 2500 * torch.rand(n, L, generator=gen)
            sd = 5 + 40 * torch.rand(n, L, generator=gen)
            mu[:, 0] = -1000 + 300 * torch.rand(n, generator=gen)  # outside: dark-ish
        idx = gen_lab[:, 0]
        m = torch.gather(mu, 1, idx.view(n, -1)).view(idx.shape)
        s = torch.gather(sd, 1, idx.view(n, -1)).view(idx.shape)
        img = (m + s * torch.randn(idx.shape, generator=gen))[:, None]
        # partial volume blur
        k = torch.tensor([0.25, 0.5, 0.25])
        kk = (k[:, None] * k[None, :])[None, None]
        img = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kk)
    # bias field, contrast, noise
    bias = F.interpolate(torch.randn(n, 1, 4, 4, generator=gen) * 0.05, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    img = img * (1 + bias) + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 60
    img = img + torch.randn(img.shape, generator=gen) * (20 * torch.rand(n, 1, 1, 1, generator=gen))
    x = (img.clamp(WINDOW[0], WINDOW[1]) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4)
    return x.clamp(0, 1) ** gamma


def dice_np(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--data", default="data/totalseg")
    ap.add_argument("--out", default="data/models")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    seed_all(20261128)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    ct_a, sp_a = load_nifti_lps(os.path.join(args.data, "example_ct_sm.nii.gz"))
    seg_a, _ = load_nifti_lps(os.path.join(args.data, "example_seg.nii.gz"))
    assert np.allclose(sp_a, SPACING), sp_a
    ct_a = ct_a.astype(np.float32)
    body_a = body_outline(ct_a)
    cz, cy, cx = np.argwhere(body_a).mean(0)
    gl = generation_labels(seg_a, ct_a, body_a)
    y_a = to_train_labels(seg_a)
    stats = {"mean": np.full(256, -1000.0), "std": np.full(256, 10.0)}
    for lab in np.unique(gl):
        v = ct_a[gl == lab]
        stats["mean"][lab] = float(v.mean())
        stats["std"][lab] = float(min(v.std(), 150.0))
    C_gl = torch.from_numpy(pad_canvas(gl, (cy, cx), 0))[:, None]
    C_hu = torch.from_numpy(pad_canvas(ct_a, (cy, cx), PAD_HU))[:, None]
    C_y = torch.from_numpy(pad_canvas(y_a, (cy, cx), 0))[:, None]
    nz = C_gl.shape[0]
    print(f"train volume A: {nz} slices; class voxels:", [int((y_a == c).sum()) for c in range(len(CLASSES))])

    model = UNet(len(CLASSES))
    nparam = sum(p.numel() for p in model.parameters())
    print(f"U-Net parameters: {nparam}")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps, pct_start=0.1)
    freq = np.array([(C_y == c).float().mean().item() for c in range(len(CLASSES))])
    w = torch.tensor(np.clip((1.0 / np.maximum(freq, 1e-4)) ** 0.5, 1, 30), dtype=torch.float32)
    w = w / w[0]
    print("class weights", [round(float(v), 2) for v in w])
    gen = torch.Generator().manual_seed(1234)
    t0 = time.time()
    model.train()
    for step in range(args.steps):
        idx = torch.randint(0, nz, (args.batch,), generator=gen)
        grid = random_warp_grid(args.batch, gen)
        g = F.grid_sample(C_gl[idx].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).long()
        hu = F.grid_sample(C_hu[idx], grid, mode="bilinear", padding_mode="border", align_corners=False)
        yb = F.grid_sample(C_y[idx].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).long()[:, 0]
        mode = int(torch.randint(0, 3, (1,), generator=gen))
        x = render(g, hu, mode, stats, gen)
        # random CROP x CROP crop (the network is fully convolutional; inference runs on 128 x 128)
        oy, ox = (int(v) for v in torch.randint(0, SIZE - CROP + 1, (2,), generator=gen))
        x = x[:, :, oy:oy + CROP, ox:ox + CROP]
        yb = yb[:, oy:oy + CROP, ox:ox + CROP]
        logits = model(x)
        ce = F.cross_entropy(logits, yb, weight=w)
        prob = logits.softmax(1)
        oh = F.one_hot(yb, len(CLASSES)).permute(0, 3, 1, 2).float()
        inter = (prob * oh).sum((0, 2, 3))
        den = prob.sum((0, 2, 3)) + oh.sum((0, 2, 3))
        dl = 1 - ((2 * inter + 1) / (den + 1))[1:].mean()
        loss = ce + dl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  ce {ce.item():.4f}  dice-loss {dl.item():.4f}  {time.time() - t0:.0f} s", flush=True)
    model.eval()

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, NAME + ".onnx")
    dummy = torch.zeros(1, 1, SIZE, SIZE)
    torch.onnx.export(
        model, dummy, onnx_path, input_names=["ct"], output_names=["logits"], opset_version=13,
        dynamic_axes={"ct": {0: "n"}, "logits": {0: "n"}}, do_constant_folding=True,
    )
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    sidecar = {
        "format": "rtopt-segmentation-model/1",
        "name": NAME,
        "onnx_file": NAME + ".onnx",
        "opset": 13,
        "input": {
            "name": "ct", "layout": "NCHW", "kind": "axial-2d", "height": SIZE, "width": SIZE,
            "spacing_mm": [SPACING, SPACING], "hu_window": list(WINDOW), "pad_hu": PAD_HU, "batch": 8,
        },
        "output_name": "logits",
        "classes": [
            {"index": i, "name": n, "interpreted_type": t or "", "color": col, "components": comp,
             "fill_holes": fh, "min_volume_cm3": mv}
            for i, (n, t, _ids, col, comp, fh, mv) in enumerate(CLASSES)
        ],
        "description": (
            f"2D U-Net ({nparam} parameters), trained by tools/train_segmentation.py on synthetic and augmented "
            "slices from one abdominal CT's TotalSegmentator label map (Apache-2.0). sha256 of the ONNX file: "
            f"{sha}. Research use only, NOT FOR CLINICAL USE."
        ),
    }
    with open(os.path.join(args.out, NAME + ".json"), "w") as f:
        json.dump(sidecar, f, indent=1)
        f.write("\n")

    # Reference pair for the Rust equivalence test: slice 15 of volume A (real CT), normalised.
    import onnxruntime as ort

    ref_in = norm(pad_canvas(ct_a, (cy, cx), PAD_HU)[15:16])[:, None].astype(np.float32)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ref_out = sess.run(["logits"], {"ct": ref_in})[0].astype(np.float32)
    with torch.no_grad():
        pt = model(torch.from_numpy(ref_in)).numpy()
    print(f"max |onnxruntime - torch| logits: {np.abs(pt - ref_out).max():.2e}")
    ref_in.tofile(os.path.join(args.out, NAME + ".ref_input.f32"))
    ref_out.tofile(os.path.join(args.out, NAME + ".ref_logits.f32"))

    # Quick evaluation at 3 mm (the Rust pipeline's numbers at native resolution are in the model card).
    def predict(ct, spacing):
        from scipy import ndimage as ndi

        zoom = (1, spacing[1] / SPACING, spacing[0] / SPACING)
        ct3 = ndi.zoom(ct, zoom, order=1)
        body = body_outline(ct3)
        _, by, bx = np.argwhere(body).mean(0)
        x = norm(pad_canvas(ct3, (by, bx), PAD_HU))[:, None].astype(np.float32)
        lg = sess.run(["logits"], {"ct": x})[0]
        return lg.argmax(1), (by, bx), ct3.shape

    pred_a, _, _ = predict(ct_a, sp_a)
    ya = pad_canvas(y_a, (cy, cx), 0)
    print("volume A (the training CT; its real image is one of the three renderings):")
    for ci in range(1, len(CLASSES)):
        print(f"  {CLASSES[ci][0]:12s} Dice {dice_np(pred_a == ci, ya == ci):.3f}")
    ct_b, sp_b = load_dicom_lps(os.path.join(args.data, "example_ct_dicom"))
    seg_b, _ = load_nifti_lps(os.path.join(args.data, "example_seg_dicom.nii.gz"))
    from scipy import ndimage as ndi

    pred_b, cb, shp = predict(ct_b, sp_b)
    yb3 = ndi.zoom(to_train_labels(seg_b), (1, sp_b[1] / SPACING, sp_b[0] / SPACING), order=0)
    yb3 = pad_canvas(yb3, cb, 0)
    print("volume B (held out, 3 mm canvas):")
    for ci in range(1, len(CLASSES)):
        if (yb3 == ci).any():
            print(f"  {CLASSES[ci][0]:12s} Dice {dice_np(pred_b == ci, yb3 == ci):.3f}")


if __name__ == "__main__":
    main()
