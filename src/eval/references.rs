//! The references of a set hashed as the service would on upload
//! ([`hash_reference_file`]), in parallel, through an optional cache of their hashes, into the
//! [`Library`] the queries run against.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::recognition::{
    Library, REFERENCE_HASHING_VERSION, ReferenceHashOptions, ReferenceHashes,
    decode_feature_frames, decode_frames, encode_feature_frames, encode_frames,
    hash_reference_file,
};

/// Hashes every reference (in parallel on `threads` threads) and builds the library, keyed by
/// file name (what the manifest's `reference` column holds), with the default verifier.
///
/// # Errors
/// A reference that cannot be hashed.
pub fn build_library(
    refs: &[PathBuf],
    opts: &ReferenceHashOptions,
    threads: usize,
    cache: Option<&Path>,
    on_progress: &(dyn Fn(&str, i64) + Sync),
) -> anyhow::Result<(Library, ReferenceStats)> {
    build_library_into(Library::new(), refs, opts, threads, cache, on_progress)
}

/// [`build_library`] into a given (empty) library, e.g. one with its own verifier settings.
///
/// # Errors
/// A reference that cannot be hashed.
pub fn build_library_into(
    mut library: Library,
    refs: &[PathBuf],
    opts: &ReferenceHashOptions,
    threads: usize,
    cache: Option<&Path>,
    on_progress: &(dyn Fn(&str, i64) + Sync),
) -> anyhow::Result<(Library, ReferenceStats)> {
    let started = Instant::now();
    let results = super::parallel_map(refs, threads, |path| {
        let name = file_name(path);
        hash_one(path, opts, cache, &|ts| on_progress(&name, ts))
    })?;
    let mut stats = ReferenceStats::default();
    for (path, result) in refs.iter().zip(results) {
        let (hashes, duration_ms, cached) = result?;
        library.insert_reference(&file_name(path), &hashes.frames, &hashes.features)?;
        stats.references += 1;
        stats.frames += hashes.frames.len();
        stats.feature_frames += hashes.features.len();
        stats.video_seconds += duration_ms as f64 / 1000.0;
        stats.cached += usize::from(cached);
    }
    library.compact();
    stats.wall_seconds = started.elapsed().as_secs_f64();
    let sizes = library.stats();
    stats.pdq_index_bytes = sizes.index_bytes;
    stats.feature_index_bytes = sizes.feature_bytes;
    Ok((library, stats))
}

/// Sizes and timing of the reference hashing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReferenceStats {
    /// References hashed.
    pub references: usize,
    /// Frames indexed, all variants.
    pub frames: usize,
    /// Total duration of the references.
    pub video_seconds: f64,
    /// Wall-clock time of the whole hashing step.
    pub wall_seconds: f64,
    /// References read from the cache instead of hashed.
    pub cached: usize,
    /// Feature frames indexed (the geometric tier).
    pub feature_frames: usize,
    /// Heap bytes of the PDQ index.
    pub pdq_index_bytes: usize,
    /// Heap bytes of the feature index.
    pub feature_index_bytes: usize,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// One hashed reference: its frames, its duration (last frame time, ms) and whether the cache
/// served it.
type Hashed = (ReferenceHashes, i64, bool);

/// Hashes one reference, through the cache when there is one. Returns the frames, the
/// reference's duration (last frame time) and whether the cache served it.
fn hash_one(
    path: &Path,
    opts: &ReferenceHashOptions,
    cache: Option<&Path>,
    progress: &dyn Fn(i64),
) -> anyhow::Result<Hashed> {
    let cache_file = match cache {
        Some(dir) => Some(dir.join(cache_key(path, opts)?)),
        None => None,
    };
    if let Some(file) = &cache_file
        && let Ok(bytes) = std::fs::read(file)
        && let Some(hashes) = decode_cached(&bytes)
    {
        let duration = hashes.frames.iter().map(|f| f.ts_ms).max().unwrap_or(0);
        return Ok((hashes, duration, true));
    }
    let hashes = hash_reference_file(path, opts, |p| progress(p.ts_ms))?;
    if let Some(file) = &cache_file {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Write then rename, so an interrupted run never leaves a half file to be trusted.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, encode_cached(&hashes))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let duration = hashes.frames.iter().map(|f| f.ts_ms).max().unwrap_or(0);
    Ok((hashes, duration, false))
}

/// Hashing version, file name, size, modification time and every hashing option, hashed into a
/// file name: a changed reference, changed options or a new hashing version never reuse stale
/// hashes.
fn cache_key(path: &Path, opts: &ReferenceHashOptions) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(format!(
        "{REFERENCE_HASHING_VERSION}|{}|{}|{}|{opts:?}",
        file_name(path),
        meta.len(),
        modified
    ));
    Ok(format!("{}.frames", hex::encode(&h.finalize()[..16])))
}

/// A cache file: the PDQ frames' byte length (u64), the frames in the one frame form
/// ([`encode_frames`]), then the feature frames.
fn encode_cached(hashes: &ReferenceHashes) -> Vec<u8> {
    let frames = encode_frames(&hashes.frames);
    let mut out = (frames.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&frames);
    out.extend_from_slice(&encode_feature_frames(&hashes.features));
    out
}

/// Reads what [`encode_cached`] wrote; `None` (hash the reference again) for a file that is
/// torn, holds no PDQ frame, or names a crop variant this version does not know.
fn decode_cached(bytes: &[u8]) -> Option<ReferenceHashes> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let mut frames = Vec::new();
    let unknown = decode_frames(bytes.get(8..8usize.checked_add(len)?)?, &mut frames).ok()?;
    if frames.is_empty() || unknown > 0 {
        return None;
    }
    let mut features = Vec::new();
    decode_feature_frames(&bytes[8 + len..], &mut features).ok()?;
    Some(ReferenceHashes { frames, features, stills: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognition::ReferenceFrame;

    #[test]
    fn cached_hashes_round_trip_and_a_torn_or_empty_file_is_a_miss() {
        let mut hash = fingerprints::Hash256::default();
        hash.set_bit(7);
        let frames = vec![ReferenceFrame {
            ts_ms: 1234,
            hash,
            quality: 88,
            variant: fingerprints::CropVariant::Square,
        }];
        let hashes = ReferenceHashes { frames, ..ReferenceHashes::default() };
        let bytes = encode_cached(&hashes);
        assert_eq!(decode_cached(&bytes), Some(hashes));
        assert_eq!(decode_cached(&bytes[..20]), None);
        assert_eq!(decode_cached(&encode_cached(&ReferenceHashes::default())), None);
    }
}
