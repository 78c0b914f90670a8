//! The recognition core behind the reference jobs and the index: hashing uploads with
//! [`crate::recognition::hash_reference_file`] / [`crate::recognition::hash_reference_image`]
//! for the reference jobs.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::Context as _;

use super::jobs::JobProgress;
use crate::domain::ReferenceSource;
use crate::recognition::{self, ReferenceHashOptions, ReferenceHashes};

/// Images larger than this are refused before being read into memory: a real still picture
/// is a few megabytes, and decoding is bounded by the decoder's own pixel limits anyway.
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Hashes reference files with the recognition core.
#[derive(Debug)]
pub struct RecognitionHasher {
    /// Decoding, pruning and crop settings.
    pub options: ReferenceHashOptions,
}

impl Default for RecognitionHasher {
    /// The recognition core's defaults, plus a still per second of reference time for
    /// reviewers (the evaluation hashes without them).
    fn default() -> Self {
        let mut options = ReferenceHashOptions::default();
        options.decode.still_interval_ms = Some(STILL_INTERVAL_MS);
        Self { options }
    }
}

/// One still per this many ms of reference time: any matched moment can be shown within half
/// a second of it, at about 10 KB a still (36 MB per reference hour at most).
pub const STILL_INTERVAL_MS: i64 = 1000;

impl RecognitionHasher {
    /// Hashes a video (or, for [`ReferenceSource::Image`], a single image) into reference
    /// frames, feature frames and stills. `progress` is called now and then (its answer is
    /// ignored: the core cannot be stopped mid-file).
    ///
    /// # Errors
    /// When the file cannot be decoded; the message is shown to the rights holder.
    pub fn hash_file(
        &self,
        path: &Path,
        source: ReferenceSource,
        progress: &mut dyn FnMut(JobProgress) -> ControlFlow<()>,
    ) -> anyhow::Result<ReferenceHashes> {
        Ok(match source {
            ReferenceSource::Image => {
                let size = std::fs::metadata(path).context("reading the uploaded image")?.len();
                anyhow::ensure!(
                    size <= MAX_IMAGE_BYTES,
                    "the image is larger than {MAX_IMAGE_BYTES} bytes"
                );
                let bytes = std::fs::read(path).context("reading the uploaded image")?;
                recognition::hash_reference_image(&bytes, &self.options)?
            }
            ReferenceSource::Video | ReferenceSource::Hashes => {
                // The core cannot be stopped mid-file; on shutdown the job is abandoned and
                // re-run at the next start, so the answer to a stop request is ignored here.
                recognition::hash_reference_file(path, &self.options, |p| {
                    #[allow(clippy::cast_precision_loss)] // stream times are far below 2^52 ms
                    let fraction = match p.duration_ms {
                        Some(total) if total > 0 => {
                            (p.ts_ms as f64 / total as f64).clamp(0.0, 0.99)
                        }
                        _ => 0.0,
                    };
                    let _ = progress(JobProgress { fraction, frames: p.frames_kept });
                })?
            }
        })
    }
}
