//! `offside hash FILE [--json]`: PDQ hash and quality of an image, or of every frame of a video.

use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context as _;
use fingerprints::{DecodeLimits, decode_rgb, pdq, pdq_rgb};
use serde::Serialize;

use crate::media::{LumaOptions, decode_luma_frames};

/// Arguments of `offside hash`.
#[derive(Debug, Clone, clap::Args)]
pub struct HashArgs {
    /// An image (JPEG, PNG, WebP) or any video FFmpeg can open.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Videos: hash at most this many frames per second of stream time.
    #[arg(long, default_value_t = 30.0)]
    pub max_fps: f64,
    /// Videos: scale frames to this long side before hashing (PDQ reduces every picture to
    /// 64x64, so the hash barely changes above a few hundred pixels).
    #[arg(long, default_value_t = 512)]
    pub long_side: u32,
}

#[derive(Debug, Serialize)]
struct FrameHash {
    ts_ms: i64,
    hash: String,
    quality: u8,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Output {
    Image { file: String, width: u32, height: u32, hash: String, quality: u8 },
    Video { file: String, frames: Vec<FrameHash> },
}

/// Runs `offside hash`, printing to stdout.
///
/// # Errors
/// The file cannot be read or decoded.
pub fn run(args: &HashArgs) -> anyhow::Result<()> {
    let output = hash_file(args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &output)?;
        writeln!(out)?;
    } else {
        match &output {
            Output::Image { hash, quality, .. } => writeln!(out, "{hash}\t{quality}")?,
            Output::Video { frames, .. } => {
                for f in frames {
                    writeln!(out, "{}\t{}\t{}", f.ts_ms, f.hash, f.quality)?;
                }
            }
        }
    }
    Ok(())
}

fn hash_file(args: &HashArgs) -> anyhow::Result<Output> {
    let name = args.file.display().to_string();
    let head = read_head(&args.file)?;
    if is_image(&head) {
        let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {name}"))?;
        // Full size, RGB and PDQ's float luma, as Meta's reference reads an image: the hash
        // agrees with other PDQ implementations bit for bit (the keyframe path's 8-bit luma
        // would move a few bits of some images).
        let rgb = decode_rgb(&bytes, &DecodeLimits::default())
            .with_context(|| format!("cannot decode {name}"))?;
        let h = pdq_rgb(rgb.width, rgb.height, &rgb.pixels)
            .with_context(|| format!("cannot hash {name}"))?;
        return Ok(Output::Image {
            file: name,
            width: rgb.width,
            height: rgb.height,
            hash: h.hash.to_hex(),
            quality: h.quality,
        });
    }
    let path = args.file.to_str().with_context(|| format!("{name} is not a UTF-8 path"))?;
    let opts = LumaOptions {
        max_fps: (args.max_fps > 0.0).then_some(args.max_fps),
        long_side: args.long_side,
        ..LumaOptions::default()
    };
    let mut frames = Vec::new();
    decode_luma_frames(path, &opts, |frame| {
        let h = pdq(&frame.luma);
        frames.push(FrameHash { ts_ms: frame.ts_ms, hash: h.hash.to_hex(), quality: h.quality });
        ControlFlow::Continue(())
    })?;
    Ok(Output::Video { file: name, frames })
}

fn read_head(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(16)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head)
}

/// JPEG, PNG and WebP by their magic bytes (what `decode_luma` accepts).
fn is_image(head: &[u8]) -> bool {
    head.starts_with(&[0xFF, 0xD8, 0xFF])
        || head.starts_with(b"\x89PNG\r\n\x1a\n")
        || (head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP")
}
