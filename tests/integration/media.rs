//! Media decoding against small clips generated with the ffmpeg CLI.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use offside::media::{
    InputOptions, KeyframeOptions, LumaOptions, MediaError, decode_luma_frames, extract_keyframes,
    probe,
};

/// Encodes `seconds` of ffmpeg's test pattern as H.264 into `dir/name`.
fn clip(dir: &Path, name: &str, seconds: u32, size: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=duration={seconds}:size={size}:rate=25"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25"])
        .args(extra)
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make {name}");
    out
}

/// A copy of `src` cut to `fraction` of its bytes.
fn truncated(src: &Path, fraction: f64) -> PathBuf {
    let bytes = std::fs::read(src).unwrap();
    let cut = (bytes.len() as f64 * fraction) as usize;
    let out =
        src.with_file_name(format!("truncated-{}", src.file_name().unwrap().to_string_lossy()));
    std::fs::write(&out, &bytes[..cut]).unwrap();
    out
}

fn all_frames(path: &Path, opts: &LumaOptions) -> Vec<offside::media::LumaFrame> {
    let mut frames = Vec::new();
    decode_luma_frames(path.to_str().unwrap(), opts, |f| {
        frames.push(f);
        ControlFlow::Continue(())
    })
    .unwrap();
    frames
}

#[test]
fn every_frame_is_decoded_in_order_at_working_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "a.mp4", 3, "640x360", &[]);
    let frames = all_frames(&path, &LumaOptions::default());
    assert_eq!(frames.len(), 75);
    assert_eq!(frames[0].ts_ms, 0);
    assert_eq!(frames[1].ts_ms, 40);
    assert_eq!(frames.last().unwrap().ts_ms, 2960);
    assert!(frames.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
    let first = &frames[0].luma;
    assert_eq!((first.width(), first.height()), (512, 288));
    // The test pattern has many levels of grey, not a flat picture.
    let distinct: std::collections::HashSet<u8> = first.pixels().iter().copied().collect();
    assert!(distinct.len() > 20);
}

#[test]
fn small_videos_are_not_upscaled_and_the_frame_rate_cap_thins_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "small.mp4", 2, "176x144", &[]);
    let opts = LumaOptions { max_fps: Some(10.0), ..LumaOptions::default() };
    let frames = all_frames(&path, &opts);
    assert_eq!((frames[0].luma.width(), frames[0].luma.height()), (176, 144));
    assert!((19..=21).contains(&frames.len()), "{} frames at 10 fps over 2 s", frames.len());
    assert!(frames.windows(2).all(|w| w[1].ts_ms - w[0].ts_ms >= 80));
}

#[test]
fn non_square_pixels_are_shown_at_their_display_aspect_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "anamorphic.mp4", 1, "320x240", &["-vf", "setsar=2/1"]);
    assert_eq!(probe(path.to_str().unwrap()).unwrap().display_width, 640);
    let frames = all_frames(&path, &LumaOptions::default());
    assert_eq!((frames[0].luma.width(), frames[0].luma.height()), (512, 192));
}

#[test]
fn keyframes_are_jpegs_every_two_seconds_of_stream_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "k.mp4", 5, "320x240", &[]);
    let mut keyframes = Vec::new();
    let summary = extract_keyframes(path.to_str().unwrap(), &KeyframeOptions::default(), |k| {
        keyframes.push(k);
        ControlFlow::Continue(())
    })
    .unwrap();
    let times: Vec<i64> = keyframes.iter().map(|k| k.ts_ms).collect();
    assert_eq!(times, [0, 2000, 4000]);
    assert_eq!(summary.frames_decoded, 125);
    assert_eq!(summary.frames_delivered, 3);
    for k in &keyframes {
        assert_eq!(&k.jpeg[..2], &[0xFF, 0xD8], "JPEG start-of-image marker");
        let img = image::load_from_memory_with_format(&k.jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height(), k.width, k.height), (320, 240, 320, 240));
    }
}

#[test]
fn large_keyframes_are_shrunk_to_the_long_side_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "big.mp4", 1, "1920x1080", &[]);
    let mut sizes = Vec::new();
    extract_keyframes(path.to_str().unwrap(), &KeyframeOptions::default(), |k| {
        sizes.push((k.width, k.height));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(sizes, [(1280, 720)]);
}

#[test]
fn realtime_keyframes_are_not_delivered_before_their_stream_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "rt.mp4", 3, "160x120", &[]);
    let opts = KeyframeOptions { realtime: true, ..KeyframeOptions::default() };
    let start = Instant::now();
    let mut arrivals = Vec::new();
    extract_keyframes(path.to_str().unwrap(), &opts, |k| {
        arrivals.push((k.ts_ms, start.elapsed()));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(arrivals.len(), 2);
    assert!(
        arrivals[1].1 >= Duration::from_millis(1950),
        "second keyframe after {:?}",
        arrivals[1].1
    );
}

#[test]
fn the_callback_can_stop_decoding_early() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "stop.mp4", 3, "160x120", &[]);
    let mut seen = 0;
    let summary = decode_luma_frames(path.to_str().unwrap(), &LumaOptions::default(), |_| {
        seen += 1;
        if seen == 5 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert_eq!(seen, 5);
    assert!(summary.stopped_early);
}

#[test]
fn a_cancelled_run_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "cancel.mp4", 3, "160x120", &[]);
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = LumaOptions {
        input: InputOptions { cancel: Some(cancel.clone()), ..InputOptions::default() },
        ..LumaOptions::default()
    };
    let mut seen = 0;
    let summary = decode_luma_frames(path.to_str().unwrap(), &opts, |_| {
        seen += 1;
        if seen == 3 {
            cancel.store(true, Ordering::Relaxed);
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(summary.stopped_early);
    assert!(seen < 75, "decoding went on for {seen} frames after the cancel");
}

#[test]
fn a_truncated_file_reports_how_far_decoding_got() {
    let dir = tempfile::tempdir().unwrap();
    // faststart puts the index first, so the cut file opens and ends part way.
    let path = clip(dir.path(), "cut.mp4", 6, "320x240", &["-movflags", "+faststart"]);
    let cut = truncated(&path, 0.4);
    let err = decode_luma_frames(cut.to_str().unwrap(), &LumaOptions::default(), |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    let MediaError::Truncated { progress, expected_ms, .. } = &err else {
        panic!("expected a truncation error, got {err}");
    };
    assert!(progress.frames > 0 && progress.frames < 150, "{progress}");
    assert!(progress.last_ts_ms.unwrap() < 5000);
    assert!((5900..=6100).contains(expected_ms));
    let message = err.to_string();
    assert!(message.contains("frames decoded") && message.contains("truncated"), "{message}");
}

#[test]
fn a_file_cut_before_its_index_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    // Without faststart the MP4 index is written last, so a cut file has none.
    let path = clip(dir.path(), "noindex.mp4", 2, "160x120", &[]);
    let cut = truncated(&path, 0.5);
    let err = extract_keyframes(cut.to_str().unwrap(), &KeyframeOptions::default(), |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(matches!(err, MediaError::Open { .. }), "{err}");
    assert!(err.to_string().contains("nothing decoded"), "{err}");
}

#[test]
fn a_file_that_is_not_a_video_is_rejected_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.mp4");
    std::fs::write(
        &path,
        (0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let err = probe(path.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, MediaError::Open { .. } | MediaError::NoVideoStream { .. }), "{err}");
    let missing = probe(dir.path().join("missing.mp4").to_str().unwrap()).unwrap_err();
    assert!(matches!(missing, MediaError::Open { .. }), "{missing}");
}
