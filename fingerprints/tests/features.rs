//! Behaviour of the geometric tier: local features, the feature index and verification.
//!
//! Synthetic scenes test the geometry (zoom, off-centre crop, rotation, overlays, mirror);
//! frames of the development clips in `tests/data/features/` test real footage, including the
//! hard negative: the same man in the same room, filmed in another take, must never verify.

use fingerprints::features::{
    FeatureConfig, FeatureIndex, Homography, Keypoint, LocalFeatures, Pair, VerifyConfig,
};
use fingerprints::{ErrorKind, Hit, Luma, MatcherConfig, StreamMatcher};
use proptest::prelude::*;

/// A deterministic textured scene: overlapping rectangles and discs of random greys on a
/// gradient, with a little noise, so it has corners everywhere, like a busy broadcast frame.
fn scene(seed: u64, w: u32, h: u32) -> Luma {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |n: u32| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % u64::from(n.max(1))) as u32
    };
    let mut px: Vec<u8> =
        (0..w * h).map(|i| ((i % w) * 60 / w + (i / w) * 60 / h + 60) as u8).collect();
    for _ in 0..260 {
        let (cx, cy) = (rnd(w), rnd(h));
        let (rw, rh) = (4 + rnd(w / 10), 4 + rnd(h / 8));
        let g = rnd(256) as u8;
        let disc = rnd(3) == 0;
        for y in cy.saturating_sub(rh)..(cy + rh).min(h) {
            for x in cx.saturating_sub(rw)..(cx + rw).min(w) {
                let (dx, dy) = (x as f32 - cx as f32, y as f32 - cy as f32);
                if !disc || (dx / rw as f32).powi(2) + (dy / rh as f32).powi(2) <= 1.0 {
                    px[(y * w + x) as usize] = g;
                }
            }
        }
    }
    for p in px.iter_mut() {
        *p = p.saturating_add(rnd(5) as u8).saturating_sub(2);
    }
    Luma::new(w, h, px).unwrap()
}

/// Renders `src` seen through a camera: output pixel `(x, y)` shows source point
/// `(cx + (x - w/2) / zoom rotated by -angle, ...)`, bilinear, grey 0 outside.
fn view(src: &Luma, w: u32, h: u32, zoom: f32, angle_deg: f32, cx: f32, cy: f32) -> Luma {
    let (sin, cos) = angle_deg.to_radians().sin_cos();
    let mut px = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = ((x as f32 - w as f32 / 2.0) / zoom, (y as f32 - h as f32 / 2.0) / zoom);
            let (sx, sy) = (cx + cos * u + sin * v, cy - sin * u + cos * v);
            px.push(sample(src, sx, sy));
        }
    }
    Luma::new(w, h, px).unwrap()
}

fn sample(src: &Luma, x: f32, y: f32) -> u8 {
    if x < 0.0 || y < 0.0 || x > (src.width() - 1) as f32 || y > (src.height() - 1) as f32 {
        return 0;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(src.width() - 1), (y0 + 1).min(src.height() - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |x: u32, y: u32| f32::from(src.row(y)[x as usize]);
    let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
    let bot = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
    (top * (1.0 - fy) + bot * fy).round() as u8
}

fn with_box(img: &Luma, x: u32, y: u32, w: u32, h: u32, grey: u8) -> Luma {
    let mut px = img.pixels().to_vec();
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            px[(yy * img.width() + xx) as usize] = grey;
        }
    }
    Luma::new(img.width(), img.height(), px).unwrap()
}

fn index_of(frames: &[(u32, u32, &Luma)]) -> FeatureIndex {
    let mut index = FeatureIndex::default();
    for &(id, group, img) in frames {
        // Each test frame is its own second of its reference.
        index.insert(
            id,
            group,
            i64::from(id) * 1000,
            &LocalFeatures::extract(img, &FeatureConfig::reference()),
        );
    }
    index
}

/// `original` as frame 0 of reference 0, and a scene of each of `seeds` as its own reference.
fn index_with_others(original: &Luma, seeds: std::ops::Range<u64>) -> FeatureIndex {
    let others: Vec<Luma> = seeds.map(|s| scene(s, 1280, 720)).collect();
    let mut frames = vec![(0, 0, original)];
    frames.extend(others.iter().enumerate().map(|(i, o)| (i as u32 + 1, i as u32 + 1, o)));
    index_of(&frames)
}

fn query(index: &FeatureIndex, img: &Luma) -> Vec<fingerprints::features::Verified> {
    index.query(&LocalFeatures::extract(img, &FeatureConfig::query()), &VerifyConfig::default())
}

#[test]
fn a_zoomed_off_centre_rotated_overlaid_copy_verifies_against_its_original() {
    let original = scene(1, 1280, 720);
    let index = index_with_others(&original, 10..14);

    // 5 % zoom, centred 60 px right and 30 px below the original centre, rotated 2 degrees,
    // with an opaque box over the top-right corner (a face-cam).
    let pirate = view(&original, 1280, 720, 1.05, 2.0, 700.0, 390.0);
    let pirate = with_box(&pirate, 960, 0, 320, 200, 40);
    let hits = query(&index, &pirate);
    assert_eq!(hits.first().map(|v| v.frame), Some(0), "{hits:?}");
    let v = &hits[0];
    assert!(!v.mirrored);
    // Query to reference: scale 1 / 1.05, rotation back by 2 degrees.
    assert!((v.transform.scale() - 1.0 / 1.05).abs() < 0.03, "{:?}", v.transform);
    assert!((v.transform.rotation().to_degrees() + 2.0).abs() < 1.0, "{:?}", v.transform);
    assert!(v.distance(&VerifyConfig::default()) <= 24);
}

/// `src` on a screen filmed from its left: the picture fills `size` of a dark frame of the same
/// dimensions, its right (far) edge `shrink` times the height of its left edge.
fn filmed_off_axis(src: &Luma, size: f32, shrink: f32) -> Luma {
    let (w, h) = (src.width() as f32, src.height() as f32);
    let (pw, ph) = (w * size, h * size);
    let (x0, y0) = ((w - pw) / 2.0, (h - ph) / 2.0);
    let pull = ph * (1.0 - shrink) / 2.0;
    // Frame corners to picture corners: the inverse mapping the renderer samples through.
    let corner = |q: (f32, f32), r: (f32, f32)| Pair { q, r, w: 1.0 };
    let to_picture = Homography::from_pairs(&[
        corner((x0, y0), (0.0, 0.0)),
        corner((x0 + pw, y0 + pull), (w - 1.0, 0.0)),
        corner((x0 + pw, y0 + ph - pull), (w - 1.0, h - 1.0)),
        corner((x0, y0 + ph), (0.0, h - 1.0)),
    ])
    .expect("four corners fix a homography");
    let px = (0..src.height())
        .flat_map(|y| (0..src.width()).map(move |x| (x, y)))
        .map(|(x, y)| {
            to_picture.apply(x as f32, y as f32).map_or(20, |(u, v)| sample(src, u, v).max(1))
        })
        .collect();
    Luma::new(src.width(), src.height(), px).unwrap()
}

#[test]
fn a_screen_filmed_off_axis_verifies_in_perspective_with_more_inliers_than_a_similarity_finds() {
    let original = scene(5, 1280, 720);
    let index = index_with_others(&original, 20..24);
    // About 15 degrees off axis: the far edge 78 % of the near one, the picture at 85 %.
    let filmed = filmed_off_axis(&original, 0.85, 0.78);
    let features = LocalFeatures::extract(&filmed, &FeatureConfig::query());
    let similarity = VerifyConfig { max_perspective: 1.0, ..VerifyConfig::default() };
    // The default verifier fits the perspective a filmed screen needs.
    let perspective = VerifyConfig::default();
    let flat = index.query(&features, &similarity);
    let seen = index.query(&features, &perspective);
    assert_eq!(seen.first().map(|v| v.frame), Some(0), "{seen:?}");
    let flat_inliers = flat.iter().find(|v| v.frame == 0).map_or(0, |v| v.inliers);
    // Measured: 68 inliers in perspective, 29 for the best similarity.
    assert!(
        seen[0].inliers >= flat_inliers + flat_inliers / 2,
        "perspective {} inliers, similarity {flat_inliers}",
        seen[0].inliers
    );
}

#[test]
fn a_portrait_centre_crop_and_a_blurred_noisy_copy_verify() {
    let original = scene(2, 1280, 720);
    let index = index_of(&[(7, 3, &original)]);
    // A 9:16 window of the centre, scaled up to 720x1280 (a phone-app restream).
    let portrait = view(&original, 720, 1280, 1280.0 / 720.0, 0.0, 640.0, 360.0);
    assert_eq!(query(&index, &portrait).first().map(|v| v.frame), Some(7));
    // Scaled down to 854x480, blurred by a box filter and noised (a filmed, re-encoded copy).
    let small = view(&original, 854, 480, 854.0 / 1280.0, -1.0, 640.0, 360.0);
    let blurred = box_blur(&small);
    assert_eq!(query(&index, &blurred).first().map(|v| v.frame), Some(7));
}

fn box_blur(img: &Luma) -> Luma {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut px = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let mut s = 0u32;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (xx, yy) = ((x + dx).clamp(0, w - 1), (y + dy).clamp(0, h - 1));
                    s += u32::from(img.row(yy as u32)[xx as usize]);
                }
            }
            let noise = ((x * 7919 + y * 104_729) % 7) as u32;
            px.push(((s / 9 + noise).saturating_sub(3)).min(255) as u8);
        }
    }
    Luma::new(img.width(), img.height(), px).unwrap()
}

#[test]
fn a_picture_shown_at_two_moments_of_a_reference_verifies_as_neither_but_a_distinct_one_does() {
    // A still held at 0 s and shown again at 5 s (a slate, a replayed shot, a static camera):
    // a keyframe of it fits both moments alike and tells the matcher nothing about which one
    // it is; a picture that the reference shows once does.
    let still = scene(30, 960, 540);
    let unique = scene(31, 960, 540);
    let index = index_of(&[(0, 1, &still), (5, 1, &still), (9, 1, &unique)]);
    let copy = view(&still, 960, 540, 1.04, 1.0, 490.0, 275.0);
    assert_eq!(query(&index, &copy), []);
    let hits = query(&index, &view(&unique, 960, 540, 1.04, 1.0, 490.0, 275.0));
    assert_eq!(hits.iter().map(|v| v.frame).collect::<Vec<_>>(), vec![9], "{hits:?}");
    // Asked about the seconds around 5 s only, the still is one moment again.
    let f = LocalFeatures::extract(&copy, &FeatureConfig::query());
    let cfg = VerifyConfig::default();
    let around_5s = index.query_between(&f, &cfg, 3_000, 8_000);
    assert_eq!(around_5s.iter().map(|v| v.frame).collect::<Vec<_>>(), vec![5], "{around_5s:?}");
    // The same still in two references is not a question of time: each verifies.
    let index = index_of(&[(0, 1, &still), (5, 2, &still)]);
    let mut frames: Vec<u32> = query(&index, &copy).iter().map(|v| v.frame).collect();
    frames.sort_unstable();
    assert_eq!(frames, vec![0, 5]);
}

#[test]
fn probing_the_unstable_key_bits_finds_matches_a_degraded_copy_loses_in_its_own_buckets() {
    let original = scene(40, 1280, 720);
    let index = index_of(&[(1, 1, &original)]);
    // Shrunk, blurred and noised: a re-encoded phone capture.
    let copy = box_blur(&box_blur(&view(&original, 640, 360, 0.5, 0.5, 640.0, 360.0)));
    let f = LocalFeatures::extract(&copy, &FeatureConfig::query());
    assert_eq!(f.unstable_bits().len(), f.len());
    let matches = |probes: usize| {
        let cfg = VerifyConfig { max_probes: probes, ..VerifyConfig::default() };
        index.query(&f, &cfg).first().map_or(0, |v| v.matches)
    };
    let (exact, probed) = (matches(0), matches(4));
    assert!(probed > exact, "probing found {probed} matches, the own buckets {exact}");
    // Features built from stored parts carry no unstable bits and are looked up as before.
    let parts = LocalFeatures::from_parts(
        f.width(),
        f.height(),
        f.keypoints().to_vec(),
        f.descriptors().to_vec(),
    );
    assert!(parts.unstable_bits().is_empty());
    let cfg = VerifyConfig::default();
    assert_eq!(
        index.query(&parts, &cfg).first().map(|v| v.matches),
        index.query(&f, &VerifyConfig { max_probes: 0, ..cfg.clone() }).first().map(|v| v.matches)
    );
}

#[test]
fn unstable_bits_are_the_only_ones_a_one_level_change_of_every_pixel_can_flip() {
    let img = scene(41, 640, 360);
    let f = LocalFeatures::extract(&img, &FeatureConfig::query());
    // Every pixel up by one where a fixed pattern says so: smoothing averages it, so no
    // smoothed sample moves by more than one level and a test whose samples differ by more
    // than two cannot flip. Keypoints move with the picture, so compare features found at
    // the same place on the same level.
    let bumped: Vec<u8> = img
        .pixels()
        .iter()
        .enumerate()
        .map(|(i, &p)| p.saturating_add(u8::from((i * 2_654_435_761) >> 31 & 1 == 1)))
        .collect();
    let g = LocalFeatures::extract(&Luma::new(640, 360, bumped).unwrap(), &FeatureConfig::query());
    let mut compared = 0;
    for (i, k) in f.keypoints().iter().enumerate() {
        let Some(j) =
            g.keypoints().iter().position(|q| q.x == k.x && q.y == k.y && q.level == k.level)
        else {
            continue;
        };
        compared += 1;
        let (a, b, u) = (f.descriptors()[i].0, g.descriptors()[j].0, f.unstable_bits()[i].0);
        for w in 0..4 {
            assert_eq!((a[w] ^ b[w]) & !u[w], 0, "a stable bit flipped at {k:?}");
        }
    }
    assert!(compared > 100, "{compared}");
}

#[test]
fn a_mirrored_copy_verifies_as_mirrored() {
    let original = scene(3, 960, 540);
    let index = index_of(&[(1, 1, &original)]);
    let hits = query(&index, &original.flip_horizontal());
    assert_eq!(hits.first().map(|v| (v.frame, v.mirrored)), Some((1, true)), "{hits:?}");
    let no_mirror = VerifyConfig { mirrored: false, ..VerifyConfig::default() };
    let f = LocalFeatures::extract(&original.flip_horizontal(), &FeatureConfig::query());
    assert!(index.query(&f, &no_mirror).is_empty(), "a mirror must not verify unmirrored");
}

#[test]
fn mirrored_features_equal_the_features_of_the_mirrored_image() {
    let img = scene(4, 800, 450);
    let cfg = FeatureConfig::query();
    let direct = LocalFeatures::extract(&img.flip_horizontal(), &cfg);
    let derived = LocalFeatures::extract(&img, &cfg).mirrored();
    // For each derived keypoint, the direct extraction has one at the same place with (almost)
    // the same descriptor; resampling is symmetric up to rounding.
    let mut close = 0;
    for (k, d) in derived.keypoints().iter().zip(derived.descriptors()) {
        let found = direct.keypoints().iter().zip(direct.descriptors()).any(|(k2, d2)| {
            k2.level == k.level
                && (k2.x - k.x).abs() < 1.5
                && (k2.y - k.y).abs() < 1.5
                && d2.distance(d) <= 24
        });
        close += usize::from(found);
    }
    assert!(close * 10 >= derived.len() * 8, "{close} of {}", derived.len());
}

#[test]
fn features_are_spread_over_the_frame() {
    // All the texture sits in the left third; a face-cam-like busy patch must not take every
    // feature, and the grid still takes features from the calmer rest.
    let busy = scene(5, 1280, 720);
    let calm = scene(6, 1280, 720);
    let mut px = calm.pixels().iter().map(|&p| p / 4 + 90).collect::<Vec<u8>>();
    for y in 0..720usize {
        px[y * 1280..y * 1280 + 420].copy_from_slice(&busy.pixels()[y * 1280..y * 1280 + 420]);
    }
    let img = Luma::new(1280, 720, px).unwrap();
    let f = LocalFeatures::extract(&img, &FeatureConfig::query());
    let right = f.keypoints().iter().filter(|k| k.x > f.width() as f32 / 3.0 + 10.0).count();
    assert!(f.len() > 200, "{}", f.len());
    assert!(right * 3 >= f.len(), "only {right} of {} features outside the busy third", f.len());
}

#[test]
fn flat_and_black_frames_have_almost_no_features_and_never_verify() {
    let black = Luma::new(1280, 720, vec![0; 1280 * 720]).unwrap();
    let grey = Luma::new(640, 360, vec![128; 640 * 360]).unwrap();
    // A dark frame with faint sensor noise (a slate between shows).
    let noisy: Vec<u8> = (0..1280u32 * 720)
        .map(|i| 16 + ((i.wrapping_mul(2_654_435_761) >> 28) % 4) as u8)
        .collect();
    let noisy = Luma::new(1280, 720, noisy).unwrap();
    for img in [&black, &grey, &noisy] {
        assert!(LocalFeatures::extract(img, &FeatureConfig::query()).len() <= 5);
    }
    let index = index_of(&[(1, 1, &black), (2, 2, &noisy), (3, 3, &scene(7, 1280, 720))]);
    for img in [&black, &grey, &noisy] {
        assert!(query(&index, img).is_empty());
    }
}

#[test]
fn a_tiny_frame_yields_no_features_and_no_panic() {
    let tiny = Luma::new(3, 2, vec![0, 255, 0, 255, 0, 255]).unwrap();
    let f = LocalFeatures::extract(&tiny, &FeatureConfig::query());
    let index = index_of(&[(1, 1, &tiny)]);
    assert!(index.query(&f, &VerifyConfig::default()).is_empty());
}

#[test]
fn unrelated_textured_scenes_never_verify() {
    let refs: Vec<Luma> = (100..116).map(|s| scene(s, 960, 540)).collect();
    let frames: Vec<(u32, u32, &Luma)> =
        refs.iter().enumerate().map(|(i, r)| (i as u32, i as u32 / 4, r)).collect();
    let index = index_of(&frames);
    for s in 200..216 {
        let hits = query(&index, &scene(s, 960, 540));
        assert!(hits.is_empty(), "scene {s} verified against {hits:?}");
    }
}

#[test]
fn a_removed_frame_no_longer_verifies_and_can_be_added_again() {
    let a = scene(8, 960, 540);
    let b = scene(9, 960, 540);
    let mut index = index_of(&[(1, 1, &a), (2, 2, &b)]);
    let n = index.len();
    assert!(index.remove(1));
    assert!(!index.remove(1));
    assert!(query(&index, &a).is_empty());
    assert_eq!(query(&index, &b).first().map(|v| v.frame), Some(2));
    index.insert(1, 1, 1000, &LocalFeatures::extract(&a, &FeatureConfig::reference()));
    assert_eq!(index.len(), n);
    assert_eq!(query(&index, &a).first().map(|v| v.frame), Some(1));
}

#[test]
fn a_snapshot_restores_an_index_that_answers_the_same() {
    let imgs: Vec<Luma> = (20..24).map(|s| scene(s, 960, 540)).collect();
    let frames: Vec<(u32, u32, &Luma)> =
        imgs.iter().enumerate().map(|(i, r)| (i as u32 * 10, 5, r)).collect();
    let mut index = index_of(&frames);
    index.remove(10);
    let bytes = index.to_bytes();
    let restored = FeatureIndex::from_bytes(&bytes).unwrap();
    assert_eq!((restored.len(), restored.frames()), (index.len(), index.frames()));
    assert_eq!(restored.to_bytes(), bytes);
    let q = view(&imgs[2], 960, 540, 1.04, 1.0, 490.0, 270.0);
    let a = query(&index, &q);
    let b = query(&restored, &q);
    assert_eq!(a.first().map(|v| v.frame), Some(20));
    assert_eq!(
        a.iter().map(|v| (v.frame, v.inliers)).collect::<Vec<_>>(),
        b.iter().map(|v| (v.frame, v.inliers)).collect::<Vec<_>>()
    );
    // Every truncation is rejected as corrupt, as is a changed magic.
    for cut in [0, 3, 8, 19, 20, 40, bytes.len() - 1] {
        assert_eq!(FeatureIndex::from_bytes(&bytes[..cut]).unwrap_err().kind(), ErrorKind::Corrupt);
    }
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert_eq!(FeatureIndex::from_bytes(&bad).unwrap_err().kind(), ErrorKind::Corrupt);
    let mut trailing = bytes;
    trailing.push(0);
    assert_eq!(FeatureIndex::from_bytes(&trailing).unwrap_err().kind(), ErrorKind::Corrupt);
}

/// Found by the `feature_frames` fuzz target: an index holding a frame without features (0x0,
/// as `LocalFeatures::default()`) wrote a snapshot that `from_bytes` refused as corrupt.
#[test]
fn a_frame_without_features_survives_a_snapshot() {
    let mut index = FeatureIndex::default();
    index.insert(1, 1, 0, &LocalFeatures::default());
    index.insert(2, 1, 1000, &LocalFeatures::from_parts(0, 270, Vec::new(), Vec::new()));
    let bytes = index.to_bytes();
    let restored = FeatureIndex::from_bytes(&bytes).expect("the index's own snapshot loads");
    assert_eq!(restored.frames(), 2);
    assert_eq!(restored.to_bytes(), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_snapshot_reader(mut bytes in proptest::collection::vec(any::<u8>(), 0..400), valid_header in any::<bool>()) {
        if valid_header && bytes.len() >= 20 {
            bytes[..8].copy_from_slice(&[b'O', b'F', b'F', b'I', 1, 4, 16, 0]);
        }
        if let Err(e) = FeatureIndex::from_bytes(&bytes) {
            prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
        }
    }
}

// ---- Real frames of the development clips ----

fn fixture(name: &str) -> Luma {
    let path = format!("{}/tests/data/features/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    fingerprints::decode_luma(&bytes, &fingerprints::DecodeLimits::default()).unwrap()
}

/// The first 30 s of `ref_webcam_take1` sampled at one frame per second, as the service
/// indexes references; frame id = reference second.
fn webcam_index() -> FeatureIndex {
    let mut index = FeatureIndex::default();
    for t in 0..30u32 {
        let img = fixture(&format!("webcam_take1_{t:02}s.jpg"));
        index.insert(
            t,
            1,
            i64::from(t) * 1000,
            &LocalFeatures::extract(&img, &FeatureConfig::reference()),
        );
    }
    index
}

#[test]
fn the_same_room_in_another_take_is_never_taken_for_the_reference() {
    // The same man in the same room and the same pose, filmed in another take: a frame of it
    // can fit one moment of the reference better than the others (one of these three does,
    // against the second that looks most like it), so a single verification proves nothing.
    // What it never does is follow the reference's timeline, and that is what the matcher
    // asks of every stream before it decides.
    let index = webcam_index();
    let cfg = VerifyConfig::default();
    let mut matcher = StreamMatcher::new(MatcherConfig::default());
    let mut verified = 0;
    for t in [3i64, 15, 27] {
        let hits: Vec<Hit> = query(&index, &fixture(&format!("webcam_take2_{t}s.jpg")))
            .iter()
            .map(|v| Hit {
                reference: u64::from(v.group),
                reference_ts_ms: i64::from(v.frame) * 1000,
                distance: v.distance(&cfg),
                weight: 1.0,
            })
            .collect();
        verified += usize::from(!hits.is_empty());
        matcher.observe(t * 1000, &hits);
    }
    assert!(verified <= 1, "{verified} of 3 frames of the other take verified");
    assert_eq!(matcher.conclusive(), None);
}

#[test]
fn real_filmed_screen_and_face_cam_overlay_keyframes_verify_against_their_reference_frames() {
    // The geometry on real footage (keystone, blur, dark surround; a face-cam and a banner),
    // against the matching reference frames alone: with the whole talking-head reference
    // indexed, other seconds of the same still room fit these keyframes nearly as well, the
    // ratio test across time refuses them, and the stream is left to the PDQ tier and to
    // the keyframes that do stand out.
    let mut index = FeatureIndex::default();
    for t in [12u32, 13] {
        index.insert(
            t,
            1,
            i64::from(t) * 1000,
            &LocalFeatures::extract(
                &fixture(&format!("webcam_take1_{t:02}s.jpg")),
                &FeatureConfig::reference(),
            ),
        );
    }
    let camcorder = query(&index, &fixture("query_camcorder_take1_12.5s.jpg"));
    assert!(matches!(camcorder.first().map(|v| v.frame), Some(12 | 13)), "{camcorder:?}");
    let overlay = query(&index, &fixture("query_overlay_take1_13.4s.jpg"));
    assert!(matches!(overlay.first().map(|v| v.frame), Some(12 | 13)), "{overlay:?}");
}

#[test]
fn features_kept_to_a_quarter_pixel_are_indexed_exactly_as_extracted() {
    // Services store reference features with positions to a quarter pixel and rebuild the
    // index from them after a restart; that index must answer every query as the one built
    // from the extracted features did (weights and inlier counts included).
    let quarter = |f: &LocalFeatures| {
        let kps = f
            .keypoints()
            .iter()
            .map(|k| Keypoint { x: (k.x * 4.0).round() / 4.0, y: (k.y * 4.0).round() / 4.0, ..*k })
            .collect();
        LocalFeatures::from_parts(f.width(), f.height(), kps, f.descriptors().to_vec())
    };
    let mut fresh = FeatureIndex::default();
    let mut stored = FeatureIndex::default();
    for t in 0..30u32 {
        let f = LocalFeatures::extract(
            &fixture(&format!("webcam_take1_{t:02}s.jpg")),
            &FeatureConfig::reference(),
        );
        fresh.insert(t, 1, i64::from(t) * 1000, &f);
        stored.insert(t, 1, i64::from(t) * 1000, &quarter(&f));
    }
    let mut verified = 0;
    for name in [
        "query_camcorder_take1_12.5s.jpg",
        "query_overlay_take1_13.4s.jpg",
        "webcam_take2_3s.jpg",
        "webcam_take2_15s.jpg",
        "webcam_take2_27s.jpg",
        "webcam_take1_05s.jpg",
        "webcam_take1_21s.jpg",
    ] {
        let img = fixture(name);
        let (cx, cy) = (img.width() as f32 * 0.45, img.height() as f32 * 0.55);
        for img in [img.clone(), view(&img, 480, 270, 1.3, 2.0, cx, cy)] {
            let q = LocalFeatures::extract(&img, &FeatureConfig::query());
            let cfg = VerifyConfig { min_distinct_ratio: 1.0, ..VerifyConfig::default() };
            let answer = fresh.query(&q, &cfg);
            verified += answer.len();
            assert_eq!(stored.query(&q, &cfg), answer, "{name}");
        }
    }
    assert!(verified >= 4, "only {verified} verifications to compare");
}

#[test]
fn a_title_card_on_black_verifies_although_its_corners_fill_two_cells() {
    // Lettering on black keeps every corner in a strip of the frame (here two cells of the
    // 4x4 coverage grid): too little coverage for an ordinary verification, but a strong fit
    // of dozens of inliers is not the few a chance alignment gathers.
    let texture = scene(5, 1280, 720);
    let mut px = vec![0u8; 1280 * 720];
    for y in 200..340 {
        for x in 350..930 {
            px[y * 1280 + x] = texture.pixels()[y * 1280 + x];
        }
    }
    let card = Luma::new(1280, 720, px).unwrap();
    let others: Vec<Luma> = (20..23).map(|s| scene(s, 1280, 720)).collect();
    let mut frames = vec![(0, 0, &card)];
    frames.extend(others.iter().enumerate().map(|(i, o)| (i as u32 + 1, i as u32 + 1, o)));
    let index = index_of(&frames);
    // The re-stream shows it at 854x480.
    let pirate = view(&card, 854, 480, 854.0 / 1280.0, 0.0, 640.0, 360.0);
    let features = LocalFeatures::extract(&pirate, &FeatureConfig::query());
    let cfg = VerifyConfig::default();
    let hits = index.query(&features, &cfg);
    assert_eq!(hits.first().map(|v| v.frame), Some(0), "{hits:?}");
    assert!(hits[0].coverage < cfg.min_coverage, "{hits:?}");
    assert!(hits[0].weight > cfg.dense_weight, "{hits:?}");
    // Without the allowance for strong fits the card would not verify.
    let strict = VerifyConfig { dense_weight: f32::INFINITY, ..cfg };
    assert!(index.query(&features, &strict).is_empty());
}

/// A bucket's size is counted wherever its items sit (the merged base or the log of recent
/// insertions), and pairs reach RANSAC in an order that does not depend on slots: the same
/// frames give the same answers whatever order they came in, compacted or not. Here the cap on
/// overfull buckets bites: each scene is inserted two to five times within a second, so with
/// a cap of three the scenes with four or five copies have their buckets skipped, wherever
/// they sit.
#[test]
fn the_index_answers_the_same_whatever_order_its_frames_came_in() {
    let rcfg = FeatureConfig::reference();
    let qcfg = FeatureConfig::query();
    // Reference 1: one still picture, forty times. Reference 2: twelve scenes, each inserted
    // 2-5 times 100 ms apart (too close to compete in the ratio test across time).
    let still = LocalFeatures::extract(&scene(7, 640, 360), &rcfg);
    let mut frames: Vec<(u32, u32, i64, LocalFeatures)> =
        (0..40).map(|i| (i, 1, i64::from(i) * 1000, still.clone())).collect();
    let scenes: Vec<Luma> = (0..12).map(|j| scene(100 + j, 640, 360)).collect();
    let mut id = 100;
    for (j, picture) in scenes.iter().enumerate() {
        let features = LocalFeatures::extract(picture, &rcfg);
        for copy in 0..(j % 4 + 2) as i64 {
            frames.push((id, 2, j as i64 * 5_000 + copy * 100, features.clone()));
            id += 1;
        }
    }
    let build = |order: &mut dyn Iterator<Item = &(u32, u32, i64, LocalFeatures)>| {
        let mut index = FeatureIndex::default();
        for (id, group, time, features) in order {
            index.insert(*id, *group, *time, features);
        }
        index
    };
    let forwards = build(&mut frames.iter());
    let backwards = build(&mut frames.iter().rev());
    let mut compacted = build(&mut frames.iter());
    compacted.compact();

    let cfg = VerifyConfig { min_bucket_cap: 3, max_bucket_ratio: 0.0, ..VerifyConfig::default() };
    let answer = |index: &FeatureIndex, q: &LocalFeatures| -> Vec<(u32, u32, u32)> {
        let mut v: Vec<(u32, u32, u32)> =
            index.query(q, &cfg).iter().map(|h| (h.frame, h.inliers, h.weight.to_bits())).collect();
        v.sort_unstable();
        v
    };
    let mut verified = 0;
    for picture in &scenes {
        let q = LocalFeatures::extract(&view(picture, 640, 360, 1.05, 1.0, 330.0, 185.0), &qcfg);
        let a = answer(&forwards, &q);
        assert_eq!(a, answer(&backwards, &q), "inserted backwards");
        assert_eq!(a, answer(&compacted, &q), "compacted");
        verified += usize::from(!a.is_empty());
    }
    // The cap leaves something to find, and takes something away.
    assert!(verified > 0, "no scene verified");
    let uncapped = VerifyConfig { min_bucket_cap: usize::MAX, ..cfg };
    let found_uncapped = scenes
        .iter()
        .filter(|p| {
            let q = LocalFeatures::extract(&view(p, 640, 360, 1.05, 1.0, 330.0, 185.0), &qcfg);
            !compacted.query(&q, &uncapped).is_empty()
        })
        .count();
    assert!(found_uncapped > verified, "the cap of 3 skipped nothing: {found_uncapped} {verified}");
}
