#!/usr/bin/env python3
"""Generates PDQ conformance vectors with Meta's reference implementation (PyPI `pdqhash`,
which wraps Meta's C++), for fingerprints/tests/pdq_vectors.rs.

    python3 -m venv /tmp/pdq && /tmp/pdq/bin/pip install pdqhash numpy pillow
    /tmp/pdq/bin/python scripts/pdq-vectors.py ../shared/vectors/pdq fingerprints/tests/data/pdq

Two kinds of vector, both hashed from RGB through the reference's float luma
(0.299 R + 0.587 G + 0.114 B, as pdqhash.compute does):
- `file`: photographs from SOURCE_DIR (the shared vector set's originals) resized with
  Pillow's Lanczos filter to sizes the shared set lacks, written as PNG next to the JSON. Small
  sizes only, so the repository stays small.
- `procedural`: pictures defined by integer formulas (gradients, noise, stripes, rings, flat
  areas with many equal values that test the median on ties) at sizes from 1x1 to 1920x1080.
  No file: the Rust test computes the same pixels from the same formula.
The output is deterministic.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

DIHEDRAL = ["original", "rotate90", "rotate180", "rotate270", "flip_x", "flip_y",
            "flip_plus1", "flip_minus1"]

PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
          "rocket.png", "motorcycle_left.png", "hubble_deefield.png"]
PHOTO_SIZES = [(64, 64), (65, 63), (127, 81), (160, 90), (90, 160), (33, 47)]

KINDS = ["gradient", "noise", "stripes", "rings", "levels", "flat", "checker"]
SIZES = [(1, 1), (2, 3), (17, 9), (63, 64), (64, 64), (96, 64), (97, 61), (128, 128),
         (255, 257), (333, 517), (640, 360), (641, 359), (1000, 1000), (1280, 720),
         (1920, 1080)]


def procedural(kind, w, h):
    """The picture of `kind` at w x h, RGB uint8. Mirrored exactly in the Rust test: integer
    arithmetic only, 32-bit wrapping where it says so."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    if kind == "gradient":
        r = x * 255 // max(w - 1, 1)
        g = y * 255 // max(h - 1, 1)
        b = (x + y) * 255 // max(w + h - 2, 1)
    elif kind == "noise":
        s = (x * 73856093 ^ y * 19349663 ^ 0x9E3779B9) & 0xFFFFFFFF
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        r, g, b = s & 255, (s >> 8) & 255, (s >> 16) & 255
    elif kind == "stripes":
        v = np.where(((x // 7) + (y // 5)) % 2 == 0, 40, 215)
        r, g, b = v, v, (v + 30) % 256
    elif kind == "rings":
        d = ((x - w // 2) ** 2 + (y - h // 2) ** 2) // max(w // 16, 1)
        r, g, b = d % 256, (d * 3) % 256, (255 - d % 256)
    elif kind == "levels":
        v = ((x * 4 // w) + (y * 4 // h) * 4) * 16
        r, g, b = v, v, v
    elif kind == "flat":
        r = g = b = np.full((h, w), 128, dtype=np.int64)
    elif kind == "checker":
        v = np.where(((x // max(w // 8, 1)) + (y // max(h // 8, 1))) % 2 == 0, 0, 255)
        r, g, b = v, v, v
    else:
        raise ValueError(kind)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def to_hex(vector):
    return format(int("".join(str(int(b)) for b in vector), 2), "064x")


def hashes(rgb):
    vector, quality = pdqhash.compute(rgb)
    vectors, dquality = pdqhash.compute_dihedral(rgb)
    assert dquality == quality
    return {"pdq": to_hex(vector), "quality": int(quality),
            "dihedral": {name: to_hex(v) for name, v in zip(DIHEDRAL, vectors)}}


def main(source, out):
    source, out = Path(source), Path(out)
    vectors = []
    for name in PHOTOS:
        original = Image.open(source / name).convert("RGB")
        stem = name.removesuffix(".png")
        for w, h in PHOTO_SIZES:
            file = f"gen_{stem}_{w}x{h}.png"
            img = original.resize((w, h), Image.LANCZOS)
            img.save(out / file, optimize=True)
            rgb = np.asarray(Image.open(out / file).convert("RGB"))
            digest = hashlib.sha256((out / file).read_bytes()).hexdigest()
            vectors.append({"file": file, "width": w, "height": h, "sha256": digest,
                            **hashes(rgb)})
    for kind in KINDS:
        for w, h in SIZES:
            vectors.append({"procedural": kind, "width": w, "height": h,
                            **hashes(procedural(kind, w, h))})
    doc = {"generator": f"Meta PDQ reference (C++), via PyPI pdqhash "
                        f"{pdqhash.__version__}; luma = 0.299 R + 0.587 G + 0.114 B in float",
           "recipe": "scripts/pdq-vectors.py",
           "vectors": vectors}
    (out / "generated.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(vectors)} vectors", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
