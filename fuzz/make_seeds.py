#!/usr/bin/env python3
"""Build the fuzz seed corpora from data/ (stdlib only; run from the repository root).

fuzz/corpus/ct_slice: TG119 CT slices, a 4 x 4 px shrink of one (fast to mutate), and the
bad-input cases of tests/foundation.rs (truncated, pixel data removed, wrong modality, tilted
orientation) plus the non-CT files of data/.
fuzz/corpus/rtstruct: RS.TG119.dcm, pydicom's rtstruct.dcm (no meta header), a truncated RS,
and a small RS with one contour of two points (the bad_contour case).
"""
import os
import struct

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "fuzz", "corpus")
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR"}


def elements(buf, start):
    """Explicit VR little endian elements from `start` (no undefined lengths at top level)."""
    out, i = [], start
    while i + 8 <= len(buf):
        g, e = struct.unpack_from("<HH", buf, i)
        vr = buf[i + 4:i + 6]
        if vr in LONG_VRS:
            (n,) = struct.unpack_from("<I", buf, i + 8)
            hdr = 12
        else:
            (n,) = struct.unpack_from("<H", buf, i + 6)
            hdr = 8
        if n == 0xFFFFFFFF:
            raise ValueError("undefined length")
        out.append(((g, e), vr, buf[i:i + hdr], buf[i + hdr:i + hdr + n]))
        i += hdr + n
    return out


def encode(tag, vr, value):
    g, e = tag
    if vr in LONG_VRS:
        return struct.pack("<HH", g, e) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", g, e) + vr + struct.pack("<H", len(value)) + value


def rewrite(buf, changes, drop=()):
    """Replace values of top-level data-set elements (tag -> bytes); drop tags in `drop`."""
    meta_end = 132
    els = elements(buf, 132)
    meta = [x for x in els if x[0][0] == 0x0002]
    for m in meta:
        meta_end += len(m[2]) + len(m[3])
    body = b""
    for tag, vr, hdr, val in elements(buf, meta_end):
        if tag in drop:
            continue
        if tag in changes:
            val = changes[tag]
            if len(val) % 2:
                val += b" "
            body += encode(tag, vr, val)
        else:
            body += hdr + val
    return buf[:meta_end] + body


def put(kind, name, data):
    d = os.path.join(OUT, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    tg = os.path.join(ROOT, "data", "tg119")
    ct = open(os.path.join(tg, "CT.TG119.0001.dcm"), "rb").read()
    for n in ("0001", "0065", "0129"):
        put("ct_slice", f"tg119_{n}.dcm", open(os.path.join(tg, f"CT.TG119.{n}.dcm"), "rb").read())
    small = rewrite(ct, {(0x0028, 0x0010): struct.pack("<H", 4), (0x0028, 0x0011): struct.pack("<H", 4),
                         (0x7FE0, 0x0010): bytes(range(32))})
    put("ct_slice", "small_4x4.dcm", small)
    put("ct_slice", "truncated.dcm", ct[: len(ct) // 2])
    put("ct_slice", "no_pixel_data.dcm", rewrite(small, {}, drop={(0x7FE0, 0x0010)}))
    put("ct_slice", "wrong_modality.dcm", rewrite(small, {(0x0008, 0x0060): b"MR"}))
    put("ct_slice", "tilted.dcm", rewrite(small, {(0x0020, 0x0037): b"1\\0\\0\\0\\0.9848\\0.1736"}))
    put("ct_slice", "bits12.dcm", rewrite(small, {(0x0028, 0x0100): struct.pack("<H", 12)}))
    for f in ("rtplan.dcm", "rtdose.dcm", "rtstruct.dcm"):
        put("ct_slice", "pydicom_" + f, open(os.path.join(ROOT, "data", "pydicom", f), "rb").read())

    rs = open(os.path.join(tg, "RS.TG119.dcm"), "rb").read()
    put("rtstruct", "tg119_rs.dcm", rs)
    put("rtstruct", "truncated_rs.dcm", rs[: len(rs) // 3])
    put("rtstruct", "pydicom_rtstruct.dcm", open(os.path.join(ROOT, "data", "pydicom", "rtstruct.dcm"), "rb").read())
    put("rtstruct", "ct_not_rs.dcm", small)

    put("rtplan", "pydicom_rtplan.dcm", open(os.path.join(ROOT, "data", "pydicom", "rtplan.dcm"), "rb").read())
    put("rtplan", "ct_not_plan.dcm", small)
    proto = open(os.path.join(ROOT, "data", "protocols", "tg119.toml"), "rb").read()
    put("protocol", "tg119.toml", proto)
    put("protocol", "truncated.toml", proto[: len(proto) // 2])


if __name__ == "__main__":
    main()
