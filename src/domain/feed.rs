//! A live feed's status.

use super::text_enum;

/// Where a feed is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FeedStatus {
    /// Being ingested (or waiting for its start or for a process to take it).
    Live,
    /// The feed dropped; the ingest is reconnecting with backoff.
    Reconnecting,
    /// The event is over (its end time passed, the input ended, or it was stopped).
    Ended,
}

text_enum!(FeedStatus { Live => "live", Reconnecting => "reconnecting", Ended => "ended" });
