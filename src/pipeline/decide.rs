//! The policy and the decision transaction.
//!
//! A decision on a (stream, reference) is one transaction: the match row (whose unique
//! constraint makes it happen at most once), the stream's status, the case with its evidence,
//! the audit entry and the outbox events. Either all of it is committed or none, so the
//! takedown webhook is sent if and only if the decision stands.

use fingerprints::Evidence;
use serde_json::json;

use super::{Deps, HandleError};
use crate::enforce::webhook::{Event, EventType};
use crate::queue::KeyframeMessage;
use crate::references::{Policy, PolicyAction};
use crate::store::cases::{self, CaseStatus, EvidenceRow, NewCase};
use crate::store::streams::{self, StreamMatch, StreamStatus};
use crate::store::{audit, is_unique_violation, new_id, now_ms, outbox};

/// A decision taken (or found already taken) on one reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The reference.
    pub reference_id: String,
    /// What the policy did.
    pub action: PolicyAction,
    /// The case opened (flag, kill).
    pub case_id: Option<String>,
    /// False when another worker or an earlier delivery had already decided.
    pub new: bool,
}

/// Why the policy does not act (yet) on conclusive evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not enough consistent seconds for this reference's policy.
    NotEnoughEvidence,
    /// The streamer is licensed for this reference.
    AllowedAccount,
    /// The keyframe's time is outside the policy's validity window.
    OutsideWindow,
}

/// The pure policy check: whether `evidence` on a keyframe of `account` captured at
/// `at_ms` (Unix ms) triggers `policy`.
pub fn check_policy(
    policy: &Policy,
    evidence: &Evidence,
    cfg: &fingerprints::MatcherConfig,
    account: Option<&str>,
    at_ms: i64,
) -> Result<(), Hold> {
    if let Some(a) = account
        && policy.allow_accounts.iter().any(|x| x == a)
    {
        return Err(Hold::AllowedAccount);
    }
    let at_ns = i128::from(at_ms) * 1_000_000;
    if policy.valid_from.is_some_and(|t| at_ns < t.unix_timestamp_nanos())
        || policy.valid_until.is_some_and(|t| at_ns > t.unix_timestamp_nanos())
    {
        return Err(Hold::OutsideWindow);
    }
    if !evidence.is_conclusive_after(cfg, policy.min_match_seconds) {
        return Err(Hold::NotEnoughEvidence);
    }
    Ok(())
}

fn action_str(a: PolicyAction) -> &'static str {
    match a {
        PolicyAction::Monitor => "monitor",
        PolicyAction::Flag => "flag",
        PolicyAction::Kill => "kill",
    }
}

/// Applies the reference's policy to the evidence and, if it acts, commits the decision.
/// Returns `None` when the policy holds back (not enough seconds yet, an allowed account, a
/// time outside the policy's window).
///
/// # Errors
/// A database error (transient).
pub async fn decide(
    deps: &Deps,
    k: &KeyframeMessage,
    reference: &crate::store::references::Reference,
    evidence: &Evidence,
) -> Result<Option<Decision>, HandleError> {
    let reference_id = reference.id.as_str();
    let stream = streams::get(deps.store.pool(), &k.stream_id).await?;
    let account =
        k.account_id.clone().or_else(|| stream.as_ref().and_then(|s| s.account_id.clone()));
    let at_ms = k.captured_at_ms.unwrap_or_else(now_ms);
    if let Err(hold) = check_policy(
        &reference.policy,
        evidence,
        &deps.recognition.matcher,
        account.as_deref(),
        at_ms,
    ) {
        tracing::debug!(stream_id = %k.stream_id, reference_id, ?hold, "evidence held back");
        return Ok(None);
    }
    let action = reference.policy.action;
    let m = StreamMatch {
        id: new_id(),
        reference_id: reference_id.to_owned(),
        action: action_str(action).to_owned(),
        offset_ms: evidence.offset_ms,
        matched_seconds: evidence.matched_seconds,
        matched_keyframes: i64::from(evidence.matched_keyframes),
        first_match_ts_ms: evidence.first_stream_ts_ms,
        decided_at_ts_ms: k.ts_ms,
        created_at: now_ms(),
    };
    let mut tx = deps.store.pool().begin().await?;
    match streams::insert_match(&mut *tx, &k.stream_id, &m).await {
        Ok(()) => {}
        Err(e) if is_unique_violation(&e) => {
            return Ok(Some(Decision {
                reference_id: reference_id.to_owned(),
                action,
                case_id: None,
                new: false,
            }));
        }
        Err(e) => return Err(e.into()),
    }
    let summary = json!({
        "stream_id": k.stream_id,
        "account_id": account,
        "reference_id": reference_id,
        "rights_holder_id": reference.rights_holder_id,
        "action": action_str(action),
        "offset_ms": evidence.offset_ms,
        "matched_seconds": evidence.matched_seconds,
        "matched_keyframes": evidence.matched_keyframes,
        "first_match_ts_ms": evidence.first_stream_ts_ms,
        "decided_at_ts_ms": k.ts_ms,
    });
    let mut case_id = None;
    if action != PolicyAction::Monitor {
        let id = new_id();
        let rows: Vec<EvidenceRow> = evidence
            .hits
            .iter()
            .map(|h| EvidenceRow {
                stream_ts_ms: h.stream_ts_ms,
                reference_ts_ms: h.reference_ts_ms,
                distance: h.distance,
            })
            .collect();
        let (status, to, event) = match action {
            PolicyAction::Kill => {
                (CaseStatus::Confirmed, StreamStatus::Killed, EventType::StreamKilled)
            }
            _ => (CaseStatus::Open, StreamStatus::Flagged, EventType::StreamFlagged),
        };
        cases::insert(
            &mut tx,
            &NewCase {
                id: &id,
                stream_id: &k.stream_id,
                reference_id,
                rights_holder_id: reference.rights_holder_id.as_deref(),
                match_id: &m.id,
                action: action_str(action),
                status,
                evidence: &rows,
            },
        )
        .await?;
        let from: &[StreamStatus] = match to {
            StreamStatus::Killed => &[StreamStatus::Live, StreamStatus::Flagged],
            _ => &[StreamStatus::Live],
        };
        let changed = streams::transition(
            &mut *tx,
            &k.stream_id,
            from,
            to,
            &format!("policy: {reference_id}"),
        )
        .await?;
        let mut data = summary.clone();
        data["case_id"] = json!(id);
        outbox::enqueue(&mut tx, &Event::new(EventType::CaseCreated, data.clone())).await?;
        if changed {
            outbox::enqueue(&mut tx, &Event::new(event, data)).await?;
        }
        case_id = Some(id);
    }
    audit::record(
        &mut *tx,
        "policy",
        &format!("stream.{}", action_str(action)),
        "stream",
        &k.stream_id,
        Some(&summary),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(stream_id = %k.stream_id, reference_id, action = action_str(action), "decision");
    metrics::counter!("offside_decisions_total", "action" => action_str(action)).increment(1);
    Ok(Some(Decision { reference_id: reference_id.to_owned(), action, case_id, new: true }))
}
