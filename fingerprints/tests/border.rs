//! Border detection on real keyframes: small fixtures cut from the development set (JPEG
//! keyframes exactly as a platform sends them), decoded the way the service decodes them
//! ([`decode_luma`]: reduced to a long side of at least 400 pixels), with rectangles measured
//! by hand.

use std::path::{Path, PathBuf};

use fingerprints::{DecodeLimits, Luma, Rect, content_rect, decode_luma};

fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
    Rect { x, y, width, height }
}

#[test]
fn blurred_fill_bars_of_vertical_streams_are_found_to_the_pixel() {
    // 720x1280 keyframes decoded at 1/2: a 16:9 (Sintel) and two 4:3 pictures over a
    // blurred, darkened, enlarged copy of themselves.
    assert_eq!(content_rect(&fixture("blurfill_sintel.jpg")), Some(rect(0, 219, 360, 202)));
    // The pianist video has thin black pillars of its own: the picture is inside those too.
    assert_eq!(content_rect(&fixture("blurfill_pianist.jpg")), Some(rect(11, 185, 338, 270)));
    assert_eq!(content_rect(&fixture("blurfill_webcam.jpg")), Some(rect(0, 185, 360, 270)));
}

#[test]
fn black_bars_above_and_below_a_vertical_stream_are_found_to_the_pixel() {
    assert_eq!(content_rect(&fixture("pillar_basketball.jpg")), Some(rect(0, 219, 360, 202)));
}

#[test]
fn a_letterboxed_frame_gives_the_picture_inside_all_four_bars() {
    // 640x480 scaled to 80 % and padded back with black: 512x384 at (64, 48).
    assert_eq!(content_rect(&fixture("letterbox_fishfillets.jpg")), Some(rect(64, 48, 512, 384)));
}

#[test]
fn ordinary_frames_that_look_like_they_have_bars_give_none() {
    // A flat green background with straight grid lines near both sides, a glowing title on
    // black, and a planet in dark space: smooth margins, but no padded picture.
    for name in ["plain_grid.jpg", "plain_title_card.jpg", "plain_dark_space.jpg"] {
        assert_eq!(content_rect(&fixture(name)), None, "{name}");
    }
}

/// Decodes a keyframe exactly as the service does.
fn decode(bytes: &[u8]) -> Luma {
    decode_luma(bytes, &DecodeLimits::default()).expect("a valid keyframe")
}

fn fixture(name: &str) -> Luma {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/border").join(name);
    decode(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn close(got: Option<Rect>, want: Rect, px: u32) -> bool {
    got.is_some_and(|g| {
        g.x.abs_diff(want.x) <= px
            && g.y.abs_diff(want.y) <= px
            && (g.x + g.width).abs_diff(want.x + want.width) <= px
            && (g.y + g.height).abs_diff(want.y + want.height) <= px
    })
}

/// Python's `round` (half to even) of `x / 2`, times 2: the eval recipe's `even()`.
fn even(x: f64) -> u32 {
    let h = x / 2.0;
    let r = h.round();
    let r = if (h - h.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - 1.0 } else { r };
    (r as u32 * 2).max(2)
}

/// The eval-dev sources' picture sizes after the recipe's upscale to 360 lines.
fn source_size(stem: &str) -> Option<(u32, u32)> {
    Some(match stem {
        "basketball" | "earth" => (640, 360),
        "carphone" | "carphone_crushed" | "tree" | "webcam_take1" => (480, 360),
        "cc_explainer" => (490, 360),
        "fishfillets" | "pianist" => (640, 480),
        "screencast" | "sintel" => (1280, 720),
        _ => return None,
    })
}

/// Where the recipe put the picture, in full-resolution pixels of the query frame.
fn expected(stem: &str, transform: &str) -> Option<Rect> {
    let (w, h) = source_size(stem)?;
    match transform {
        "letterbox" => {
            let (iw, ih) = (even(f64::from(w) * 0.8), even(f64::from(h) * 0.8));
            Some(Rect { x: (w - iw) / 2, y: (h - ih) / 2, width: iw, height: ih })
        }
        "portrait_pillar" | "portrait_blurfill" => {
            let ih = even(720.0 * f64::from(h) / f64::from(w));
            Some(Rect { x: 0, y: (1280 - ih) / 2, width: 720, height: ih })
        }
        _ => None,
    }
}

/// Scales a full-resolution rectangle to a decoded image `factor` times smaller.
fn scaled(r: Rect, factor: f64) -> Rect {
    let f = |v: u32| (f64::from(v) / factor).round() as u32;
    Rect {
        x: f(r.x),
        y: f(r.y),
        width: f(r.x + r.width) - f(r.x),
        height: f(r.y + r.height) - f(r.y),
    }
}

/// Sintel's own picture is 2.35:1 inside its 16:9 frame (rows 88..632 of 720): inside a padded
/// copy, finding the inner picture is as right as finding the padded frame.
fn sintel_inner(outer: Rect) -> Rect {
    let k = f64::from(outer.height) / 720.0;
    let y = outer.y + (88.0 * k).round() as u32;
    Rect { x: outer.x, y, width: outer.width, height: (544.0 * k).round() as u32 }
}

/// Sources of the development set whose pictures carry bars of their own (Sintel is 2.35:1
/// inside 16:9, the pianist has thin black pillars, the screencast a black terminal margin):
/// finding the picture inside them is right too.
const OWN_BARS: [&str; 3] = ["sintel", "pianist", "screencast"];

/// Measures border detection over a built eval-dev set: `OFFSIDE_EVAL_DIR=/path cargo test -p
/// fingerprints --release --test border -- --ignored --nocapture`. Prints, per bordered
/// transformation, how many keyframes were found exactly / within 2 px / wrong / missed, and
/// counts detections on frames that have no bars.
#[test]
#[ignore = "needs a built eval-dev set in OFFSIDE_EVAL_DIR"]
fn border_detection_report_on_an_eval_set() {
    let Some(dir) = std::env::var_os("OFFSIDE_EVAL_DIR").map(PathBuf::from) else {
        panic!("set OFFSIDE_EVAL_DIR to a built eval-dev directory");
    };
    let mut queries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().contains("__")))
        .collect();
    queries.sort();
    // transform -> [exact, within 2 px, inside (the source's own bars), wrong, missed]
    let mut table: std::collections::BTreeMap<String, [u32; 5]> = Default::default();
    let mut plain = [0u32; 2]; // frames without bars: [frames, detections]
    let verbose = std::env::var_os("BORDER_VERBOSE").is_some();
    for q in &queries {
        let name = q.file_name().unwrap().to_string_lossy().to_string();
        let parts: Vec<&str> = name.split("__").collect();
        let (stem, transform) = (parts[0].trim_start_matches("neg_"), parts[1]);
        let mut frames: Vec<PathBuf> = std::fs::read_dir(q)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
            .collect();
        frames.sort();
        for f in frames {
            let bytes = std::fs::read(&f).unwrap();
            let img = decode(&bytes);
            let got = content_rect(&img);
            let bordered =
                matches!(transform, "letterbox" | "portrait_pillar" | "portrait_blurfill");
            if !bordered {
                if transform == "camcorder" || OWN_BARS.contains(&stem) {
                    // A filmed screen has a real surround, and some sources carry their own
                    // bars: neither is a frame without bars.
                    continue;
                }
                plain[0] += 1;
                if got.is_some() {
                    plain[1] += 1;
                    if verbose {
                        println!("FALSE {} {:?} {:?}", f.display(), img, got);
                    }
                }
                continue;
            }
            let Some(full) = expected(stem, transform) else { continue };
            let full_w = if transform == "letterbox" { source_size(stem).unwrap().0 } else { 720 };
            let factor = f64::from(full_w) / f64::from(img.width());
            let want = scaled(full, factor);
            let mut wants = vec![want];
            if stem == "sintel" || stem == "screencast" {
                wants.push(sintel_inner(want));
            }
            let row = table.entry(transform.to_string()).or_default();
            let inside = |g: Rect, w: Rect| {
                g.x + 2 >= w.x
                    && g.y + 2 >= w.y
                    && g.x + g.width <= w.x + w.width + 2
                    && g.y + g.height <= w.y + w.height + 2
            };
            let slot = match got {
                None => 4,
                Some(_) if wants.iter().any(|w| close(got, *w, 0)) => 0,
                Some(_) if wants.iter().any(|w| close(got, *w, 2)) => 1,
                Some(g) if OWN_BARS.contains(&stem) && inside(g, want) => 2,
                Some(_) => 3,
            };
            row[slot] += 1;
            if verbose && slot >= 2 {
                println!(
                    "{} {} {:?} got {:?} want {:?}",
                    ["", "", "INSIDE", "WRONG", "MISS"][slot],
                    f.display(),
                    img,
                    got,
                    wants
                );
            }
        }
    }
    println!("transform            exact  <=2px  inside  wrong  missed");
    for (t, r) in &table {
        println!("{t:<20} {:>5}  {:>5}  {:>6}  {:>5}  {:>6}", r[0], r[1], r[2], r[3], r[4]);
    }
    println!("frames without bars: {} with a detection out of {}", plain[1], plain[0]);
    let wrong: u32 = table.values().map(|r| r[3]).sum();
    assert!(plain[1] * 100 <= plain[0], "more than 1 % false detections");
    assert!(
        wrong * 20 <= table.values().map(|r| r.iter().sum::<u32>()).sum::<u32>(),
        "more than 5 % wrong rectangles"
    );
}
