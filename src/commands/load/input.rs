//! The keyframes the tool sends: negatives from a folder of JPEGs, pirates from the load
//! reference.

use std::path::Path;

use anyhow::{Context as _, bail};
use bytes::Bytes;

use crate::media::{KeyframeOptions, extract_keyframes};

pub(super) fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s.split_once('x').context("--size is WIDTHxHEIGHT, e.g. 1280x720")?;
    Ok((w.trim().parse().context("--size width")?, h.trim().parse().context("--size height")?))
}

/// Reads up to `max` JPEGs under `dir` (sorted, so runs are repeatable), optionally of one
/// size, leaving out positive queries of `exclude_reference` when a manifest says which.
pub(super) fn load_keyframes(
    dir: &Path,
    size: Option<(u32, u32)>,
    max: usize,
    exclude_reference: Option<&str>,
) -> anyhow::Result<Vec<Bytes>> {
    let mut excluded = std::collections::HashSet::new();
    if let (Some(reference), Ok(manifest)) =
        (exclude_reference, std::fs::read_to_string(dir.join("manifest.tsv")))
    {
        for line in manifest.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() > 3 && (cols[3] == reference || cols.get(7) == Some(&reference)) {
                excluded.insert(cols[0].to_owned());
            }
        }
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if !name.is_some_and(|n| excluded.contains(&n)) {
                    pending.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        if out.len() >= max {
            break;
        }
        if let Some(want) = size {
            let got = image::ImageReader::open(&path)
                .ok()
                .and_then(|r| r.with_guessed_format().ok())
                .and_then(|r| r.into_dimensions().ok());
            if got != Some(want) {
                continue;
            }
        }
        out.push(Bytes::from(
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        ));
    }
    if out.is_empty() {
        bail!(
            "no JPEG keyframes{} under {}",
            size.map(|(w, h)| format!(" of {w}x{h}")).unwrap_or_default(),
            dir.display()
        );
    }
    Ok(out)
}

/// The reference's keyframes every 2 s, at its own size (up to 1280 wide), as a pirate
/// re-streaming it untouched would send them.
pub(super) fn reference_keyframes(path: &str) -> anyhow::Result<Vec<Bytes>> {
    let mut frames = Vec::new();
    extract_keyframes(path, &KeyframeOptions::default(), |k| {
        frames.push(Bytes::from(k.jpeg));
        std::ops::ControlFlow::Continue(())
    })
    .with_context(|| format!("extracting keyframes of {path}"))?;
    if frames.len() < 3 {
        bail!("{path} is too short for pirate streams ({} keyframes)", frames.len());
    }
    Ok(frames)
}
