//! The events of the webhook contract: `{id, type, created_at, data}`, signed and delivered by
//! [`crate::enforce`], written to the outbox by whoever decides.

use serde::Serialize;

/// The event types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum EventType {
    /// A stream was flagged for review.
    #[serde(rename = "stream.flagged")]
    StreamFlagged,
    /// A stream was killed (by policy, by confirming a case, or by hand).
    #[serde(rename = "stream.killed")]
    StreamKilled,
    /// A killed or flagged stream was restored.
    #[serde(rename = "stream.restored")]
    StreamRestored,
    /// A case was opened for review.
    #[serde(rename = "case.created")]
    CaseCreated,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 4] = [
        EventType::StreamFlagged,
        EventType::StreamKilled,
        EventType::StreamRestored,
        EventType::CaseCreated,
    ];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::StreamFlagged => "stream.flagged",
            EventType::StreamKilled => "stream.killed",
            EventType::StreamRestored => "stream.restored",
            EventType::CaseCreated => "case.created",
        }
    }

    /// Parses the contract's name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One event, serialised as the webhook body `{id, type, created_at, created_at_ms, data}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Event {
    /// Unique id; receivers deduplicate on it (delivery is at-least-once).
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339 UTC time the event was decided (kept for receivers written against it).
    pub created_at: String,
    /// The same time in milliseconds since the Unix epoch, the API's canonical time form.
    #[serde(default)]
    pub created_at_ms: i64,
    /// Event-specific data (stream, reference, case, evidence summary).
    pub data: serde_json::Value,
}

impl Event {
    /// A new event with a fresh id (UUID v7: time-ordered) created now.
    pub fn new(kind: EventType, data: serde_json::Value) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let created_at =
            now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let created_at_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Event { id: uuid::Uuid::now_v7().to_string(), kind, created_at, created_at_ms, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serialises_with_the_contract_field_names() {
        let e = Event::new(EventType::StreamKilled, serde_json::json!({"stream_id": "s1"}));
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "stream.killed");
        assert_eq!(v["data"]["stream_id"], "s1");
        assert!(v["id"].as_str().is_some_and(|s| s.len() == 36));
        assert!(
            time::OffsetDateTime::parse(
                v["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
        // Both forms of the time, and they agree to the millisecond.
        let rfc3339 = time::OffsetDateTime::parse(
            v["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(
            i64::try_from(rfc3339.unix_timestamp_nanos() / 1_000_000).unwrap(),
            v["created_at_ms"].as_i64().unwrap()
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 5);
    }
}
