//! A reference's policy: what to do on a match, after how much evidence, when, and for whom
//! not.

use serde::{Deserialize, Serialize};

use super::text_enum;

text_enum!(PolicyAction { Monitor => "monitor", Flag => "flag", Kill => "kill" });

/// What happens when a stream matches a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    /// Record the match only.
    Monitor,
    /// Open a case for trust-and-safety review.
    Flag,
    /// Take the stream down through the platform's hook.
    Kill,
}

/// A reference's policy: what to do on a match, after how much evidence, when, and for whom
/// not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What to do once the evidence is strong enough.
    pub action: PolicyAction,
    /// Seconds of consistent matching evidence required before acting (0 < x ≤ 3600).
    #[serde(default = "default_min_match_seconds")]
    #[schema(exclusive_minimum = 0.0, maximum = 3600.0)]
    pub min_match_seconds: f64,
    /// The policy applies from this time on (RFC 3339); before it, matches are only recorded.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_from: Option<time::OffsetDateTime>,
    /// The policy applies until this time (RFC 3339); after it, matches are only recorded.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<time::OffsetDateTime>,
    /// Streamer accounts allowed to carry this content (the licensed broadcasters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_accounts: Vec<String>,
}

fn default_min_match_seconds() -> f64 {
    Policy::DEFAULT_MIN_MATCH_SECONDS
}

impl Default for Policy {
    /// Flag for review once the default evidence is in: acting needs a human until a
    /// rights holder opts into `kill`.
    fn default() -> Self {
        Self {
            action: PolicyAction::Flag,
            min_match_seconds: Self::DEFAULT_MIN_MATCH_SECONDS,
            valid_from: None,
            valid_until: None,
            allow_accounts: Vec::new(),
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    /// `min_match_seconds` out of range.
    #[error("min_match_seconds must be a number above 0 and at most 3600")]
    MinMatchSeconds,
    /// The validity window ends before it starts.
    #[error("valid_until must be after valid_from")]
    EmptyWindow,
    /// An empty account id in `allow_accounts`.
    #[error("allow_accounts must not contain empty account ids")]
    EmptyAccount,
}

impl Policy {
    /// The default `min_match_seconds`: the recognition core's measured decision rule, so a
    /// reference uploaded without one is decided exactly as `offside eval` decides.
    pub const DEFAULT_MIN_MATCH_SECONDS: f64 = 2.0;

    /// Checks the invariants a stored policy holds.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.min_match_seconds.is_finite()
            && self.min_match_seconds > 0.0
            && self.min_match_seconds <= 3600.0)
        {
            return Err(PolicyError::MinMatchSeconds);
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until)
            && until <= from
        {
            return Err(PolicyError::EmptyWindow);
        }
        if self.allow_accounts.iter().any(|a| a.trim().is_empty()) {
            return Err(PolicyError::EmptyAccount);
        }
        Ok(())
    }

    /// Whether the policy applies at `now_ms` (milliseconds since the Unix epoch).
    pub fn is_active_at(&self, now_ms: i64) -> bool {
        let to_ms = |t: time::OffsetDateTime| {
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
        };
        self.valid_from.is_none_or(|from| now_ms >= to_ms(from))
            && self.valid_until.is_none_or(|until| now_ms < to_ms(until))
    }

    /// Whether `account_id` is licensed to carry the content.
    pub fn allows_account(&self, account_id: &str) -> bool {
        self.allow_accounts.iter().any(|a| a == account_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_with_only_an_action_gets_the_default_evidence_time() {
        let policy: Policy = serde_json::from_str(r#"{"action":"kill"}"#).unwrap();
        assert_eq!(policy.action, PolicyAction::Kill);
        assert_eq!(policy.min_match_seconds, Policy::DEFAULT_MIN_MATCH_SECONDS);
        // One decision rule: a default policy asks exactly what the matcher's measured rule asks.
        assert_eq!(
            Policy::DEFAULT_MIN_MATCH_SECONDS,
            fingerprints::MatcherConfig::default().min_matched_seconds
        );
        assert!(policy.validate().is_ok());
    }

    #[test]
    fn policy_rejects_zero_evidence_and_inverted_windows() {
        let zero: Policy =
            serde_json::from_str(r#"{"action":"flag","min_match_seconds":0}"#).unwrap();
        assert_eq!(zero.validate(), Err(PolicyError::MinMatchSeconds));
        let inverted: Policy = serde_json::from_str(
            r#"{"action":"flag","valid_from":"2030-01-02T00:00:00Z","valid_until":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(inverted.validate(), Err(PolicyError::EmptyWindow));
    }

    #[test]
    fn policy_is_active_only_inside_its_window() {
        let policy: Policy = serde_json::from_str(
            r#"{"action":"flag","valid_from":"2030-01-01T00:00:00Z","valid_until":"2030-01-02T00:00:00Z"}"#,
        )
        .unwrap();
        let from_ms = 1_893_456_000_000; // 2030-01-01T00:00:00Z
        assert!(!policy.is_active_at(from_ms - 1));
        assert!(policy.is_active_at(from_ms));
        assert!(!policy.is_active_at(from_ms + 86_400_000));
    }
}
