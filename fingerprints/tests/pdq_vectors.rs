//! Conformance of the PDQ port with Meta's reference implementation.
//!
//! `tests/data/pdq/vectors.json` lists lossless PNGs with the hash, quality and dihedral hashes
//! that the reference (C++, through its Python bindings) computed from float luma
//! 0.299 R + 0.587 G + 0.114 B. Set `PDQ_VECTORS_DIR` to run the same checks on another folder
//! in that layout (for example the full shared vector set).

use std::path::PathBuf;

use fingerprints::{Hash256, Luma, pdq, pdq_dihedral, pdq_dihedral_rgb, pdq_rgb};

struct Vector {
    file: String,
    hash: Hash256,
    quality: u8,
    dihedral: [Hash256; 8],
}

struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

fn vectors_dir() -> PathBuf {
    std::env::var_os("PDQ_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pdq"))
}

fn load_vectors() -> Vec<(Vector, Image)> {
    let dir = vectors_dir();
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("vectors.json")).expect("vectors.json is readable"),
    )
    .expect("vectors.json parses");
    let hash = |v: &serde_json::Value| {
        Hash256::from_hex(v.as_str().expect("hash is a string")).expect("hash is hex")
    };
    json["vectors"]
        .as_array()
        .expect("a vectors array")
        .iter()
        .map(|v| {
            let file = v["file"].as_str().expect("file name").to_owned();
            let d = &v["dihedral"];
            let dihedral = [
                "original",
                "rotate90",
                "rotate180",
                "rotate270",
                "flip_x",
                "flip_y",
                "flip_plus1",
                "flip_minus1",
            ]
            .map(|name| hash(&d[name]));
            let img =
                image::open(dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}")).to_rgb8();
            let image = Image { width: img.width(), height: img.height(), rgb: img.into_raw() };
            let vector = Vector {
                file,
                hash: hash(&v["pdq"]),
                quality: v["quality"].as_u64().expect("quality") as u8,
                dihedral,
            };
            (vector, image)
        })
        .collect()
}

/// Agreement figures for one way of hashing the vectors.
#[derive(Default, Debug)]
struct Agreement {
    vectors: usize,
    identical: usize,
    max_bits: u32,
    max_quality_delta: u8,
    dihedral_identical: usize,
    dihedral_max_bits: u32,
    dihedral_identical_percent: usize,
}

impl Agreement {
    fn assert_conformant(&self, what: &str) {
        eprintln!("{what}: {self:?}");
        assert!(self.vectors >= 10, "{what}: too few vectors ({})", self.vectors);
        assert!(
            self.identical * 100 >= self.vectors * 95,
            "{what}: only {} of {} hashes identical",
            self.identical,
            self.vectors
        );
        assert!(self.max_bits <= 4, "{what}: a hash is {} bits from the reference", self.max_bits);
        assert!(self.max_quality_delta <= 2, "{what}: quality off by {}", self.max_quality_delta);
        assert!(
            self.dihedral_identical * 100 >= self.vectors * 8 * self.dihedral_identical_percent,
            "{what}: only {} of {} dihedral hashes identical",
            self.dihedral_identical,
            self.vectors * 8
        );
        assert!(
            self.dihedral_max_bits <= 4,
            "{what}: a dihedral hash is {} bits off",
            self.dihedral_max_bits
        );
    }
}

#[test]
fn rgb_hashes_match_the_reference_vectors() {
    let mut a = Agreement { dihedral_identical_percent: 100, ..Agreement::default() };
    for (v, img) in load_vectors() {
        let h = pdq_rgb(img.width, img.height, &img.rgb).unwrap();
        let bits = h.hash.distance(&v.hash);
        if bits > 0 {
            eprintln!("{}: {bits} bits from the reference", v.file);
        }
        a.vectors += 1;
        a.identical += usize::from(bits == 0);
        a.max_bits = a.max_bits.max(bits);
        a.max_quality_delta = a.max_quality_delta.max(h.quality.abs_diff(v.quality));
        let (d, q) = pdq_dihedral_rgb(img.width, img.height, &img.rgb).unwrap();
        assert_eq!(q, h.quality, "{}: dihedral quality differs from the plain one", v.file);
        for (ours, theirs) in d.to_array().iter().zip(&v.dihedral) {
            let bits = ours.distance(theirs);
            a.dihedral_identical += usize::from(bits == 0);
            a.dihedral_max_bits = a.dihedral_max_bits.max(bits);
        }
    }
    a.assert_conformant("pdq_rgb");
    // The float path is the reference's arithmetic: every hash identical, not just close.
    assert_eq!(a.identical, a.vectors, "pdq_rgb: every hash identical to the reference");
    assert_eq!(a.max_quality_delta, 0);
}

#[test]
fn eight_bit_luma_hashes_match_the_reference_vectors() {
    // The service decodes straight to 8-bit luma, which rounds what the reference keeps as
    // float; this checks that the rounding stays inside the conformance bounds too.
    // Flat images are where rounding shows: their DCT is pure float noise whose pattern depends
    // on the exact luma values, so the dihedral bar is lower here than for the float path.
    let mut a = Agreement { dihedral_identical_percent: 90, ..Agreement::default() };
    for (v, img) in load_vectors() {
        let luma = Luma::from_rgb(img.width, img.height, &img.rgb).unwrap();
        let h = pdq(&luma);
        let bits = h.hash.distance(&v.hash);
        if bits > 0 {
            eprintln!("{} (8-bit luma): {bits} bits from the reference", v.file);
        }
        a.vectors += 1;
        a.identical += usize::from(bits == 0);
        a.max_bits = a.max_bits.max(bits);
        a.max_quality_delta = a.max_quality_delta.max(h.quality.abs_diff(v.quality));
        let (d, _) = pdq_dihedral(&luma);
        for (ours, theirs) in d.to_array().iter().zip(&v.dihedral) {
            let bits = ours.distance(theirs);
            a.dihedral_identical += usize::from(bits == 0);
            a.dihedral_max_bits = a.dihedral_max_bits.max(bits);
        }
    }
    a.assert_conformant("pdq(&Luma)");
}

#[test]
fn the_mirror_variant_is_within_matching_radius_of_the_mirrored_images_hash() {
    // The DCT-domain mirror is exact only when the reference's sampling grid is symmetric; with
    // an even box window or off-centre samples it is off by up to half a pixel, which moves a
    // few bits of a photograph (and many of white noise, whose energy sits at the highest
    // frequencies, hence its exclusion).
    let mut total = 0;
    let mut count = 0;
    for (v, img) in
        load_vectors().into_iter().filter(|(v, _)| v.quality >= 50 && !v.file.starts_with("noise"))
    {
        let luma = Luma::from_rgb(img.width, img.height, &img.rgb).unwrap();
        let (d, _) = pdq_dihedral(&luma);
        let mirrored = pdq(&luma.flip_horizontal()).hash;
        let bits = d.mirror().distance(&mirrored);
        assert!(
            bits <= 24,
            "{}: mirror variant is {bits} bits from the hash of the mirrored image",
            v.file
        );
        assert!(
            d.original.distance(&mirrored) > 64,
            "{}: the mirror changes the hash little; the test proves nothing",
            v.file
        );
        total += bits;
        count += 1;
    }
    assert!(count >= 5, "too few photographs among the vectors");
    assert!(
        total <= count * 8,
        "mirror variants are {} bits off on average",
        total as f64 / count as f64
    );
}

/// The picture `scripts/pdq-vectors.py` defines as `kind` at `w` x `h` (RGB), from the same
/// integer formulas.
fn procedural(kind: &str, w: u32, h: u32) -> Vec<u8> {
    let (wi, hi) = (i64::from(w), i64::from(h));
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..hi {
        for x in 0..wi {
            let (r, g, b) = match kind {
                "gradient" => (
                    x * 255 / (wi - 1).max(1),
                    y * 255 / (hi - 1).max(1),
                    (x + y) * 255 / (wi + hi - 2).max(1),
                ),
                "noise" => {
                    let mut s = ((x * 73_856_093) ^ (y * 19_349_663) ^ 0x9E37_79B9) & 0xFFFF_FFFF;
                    s ^= (s << 13) & 0xFFFF_FFFF;
                    s ^= s >> 17;
                    s ^= (s << 5) & 0xFFFF_FFFF;
                    (s & 255, (s >> 8) & 255, (s >> 16) & 255)
                }
                "stripes" => {
                    let v = if ((x / 7) + (y / 5)) % 2 == 0 { 40 } else { 215 };
                    (v, v, (v + 30) % 256)
                }
                "rings" => {
                    let d = ((x - wi / 2).pow(2) + (y - hi / 2).pow(2)) / (wi / 16).max(1);
                    (d % 256, (d * 3) % 256, 255 - d % 256)
                }
                "levels" => {
                    let v = ((x * 4 / wi) + (y * 4 / hi) * 4) * 16;
                    (v, v, v)
                }
                "flat" => (128, 128, 128),
                "checker" => {
                    let v = if ((x / (wi / 8).max(1)) + (y / (hi / 8).max(1))) % 2 == 0 {
                        0
                    } else {
                        255
                    };
                    (v, v, v)
                }
                other => panic!("unknown procedural picture {other}"),
            };
            rgb.extend([r, g, b].map(|c| u8::try_from(c).expect("a channel value")));
        }
    }
    rgb
}

#[test]
fn generated_vectors_hash_bit_for_bit_like_the_reference() {
    // Photographs at sizes the shared set lacks and procedural pictures from 1x1 to 1920x1080
    // (flat areas and few grey levels test the median on ties), hashed by Meta's reference
    // (`scripts/pdq-vectors.py`). The float path must agree exactly, dihedral hashes included.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pdq");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("generated.json")).expect("generated.json"))
            .expect("generated.json parses");
    let hash = |v: &serde_json::Value| Hash256::from_hex(v.as_str().expect("hex")).expect("hex");
    let mut checked = 0;
    let mut differing = Vec::new();
    for v in json["vectors"].as_array().expect("vectors") {
        let (w, h) = (v["width"].as_u64().unwrap() as u32, v["height"].as_u64().unwrap() as u32);
        let (name, rgb) = match (v["file"].as_str(), v["procedural"].as_str()) {
            (Some(file), _) => {
                let img = image::open(dir.join(file)).expect(file).to_rgb8();
                assert_eq!((img.width(), img.height()), (w, h), "{file}");
                (file.to_owned(), img.into_raw())
            }
            (None, Some(kind)) => (format!("{kind} {w}x{h}"), procedural(kind, w, h)),
            _ => panic!("a vector names a file or a procedural picture: {v}"),
        };
        let ours = pdq_rgb(w, h, &rgb).expect("hashes");
        let (dihedral, quality) = pdq_dihedral_rgb(w, h, &rgb).expect("hashes");
        let expected = v["dihedral"].clone();
        let names = [
            "original",
            "rotate90",
            "rotate180",
            "rotate270",
            "flip_x",
            "flip_y",
            "flip_plus1",
            "flip_minus1",
        ];
        let dihedral_bits: Vec<u32> = dihedral
            .to_array()
            .iter()
            .zip(names)
            .map(|(ours, n)| ours.distance(&hash(&expected[n])))
            .collect();
        let bits = ours.hash.distance(&hash(&v["pdq"]));
        let want_quality = v["quality"].as_u64().unwrap() as u8;
        if bits != 0
            || ours.quality != want_quality
            || quality != want_quality
            || dihedral_bits.iter().any(|b| *b != 0)
        {
            differing.push(format!(
                "{name}: {bits} bits, quality {} vs {want_quality}, dihedral bits {dihedral_bits:?}",
                ours.quality
            ));
        }
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} vectors");
    assert!(
        differing.is_empty(),
        "{} of {checked} differ:\n{}",
        differing.len(),
        differing.join("\n")
    );
}
