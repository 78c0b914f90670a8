//! A reference's source and status.

use serde::{Deserialize, Serialize};

use super::text_enum;

/// Where a reference's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceSource {
    /// An uploaded video file, hashed densely by a job.
    Video,
    /// An uploaded image: a one-frame reference.
    Image,
    /// Hash lines imported by the rights holder (`POST /v1/references/{id}/hashes`).
    Hashes,
}

/// Where a reference is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceStatus {
    /// Its upload is being hashed.
    Processing,
    /// Its frames are in the index and it can be matched.
    Ready,
    /// A live feed being hashed as it airs.
    Live,
    /// Its job failed; `error` says why.
    Failed,
}

text_enum!(ReferenceSource { Video => "video", Image => "image", Hashes => "hashes" });
text_enum!(ReferenceStatus {
    Processing => "processing",
    Ready => "ready",
    Live => "live",
    Failed => "failed",
});
