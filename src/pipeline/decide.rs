//! The policy and the decision transaction.
//!
//! A decision on a (stream, reference) is one transaction: the match row (whose unique
//! constraint makes it happen at most once), the stream's status, the case with its evidence,
//! the audit entry and the outbox events. Either all of it is committed or none, so the
//! takedown webhook is sent if and only if the decision stands.

use std::collections::HashMap;

use fingerprints::Evidence;
use serde_json::json;

use super::{Deps, HandleError};
use crate::domain::{Event, EventType, Policy, PolicyAction};
use crate::queue::KeyframeMessage;
use crate::recognition::HitTier;
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

/// Applies the reference's policy to the evidence and, if it acts, commits the decision.
/// Returns `None` when the policy holds back (not enough seconds yet, an allowed account, a
/// time outside the policy's window). Before committing, it waits for the stills its process
/// is still making (see [`super::StillToKeep`]), so the case opens with their pictures.
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
    // The case opens with the pictures of the keyframes before this one (see `StillToKeep`).
    deps.wait_for_stills_in_flight().await;
    let action = reference.policy.action;
    let delay_ms = live_delay_ms(deps, k, reference, evidence).await?;
    let m = StreamMatch {
        id: new_id(),
        reference_id: reference_id.to_owned(),
        action: action.as_str().to_owned(),
        offset_ms: evidence.offset_ms,
        matched_seconds: evidence.matched_seconds,
        matched_keyframes: i64::from(evidence.matched_keyframes),
        delay_ms,
        first_match_ts_ms: evidence.first_stream_ts_ms,
        decided_at_ts_ms: evidence.last_stream_ts_ms,
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
        "action": action.as_str(),
        "offset_ms": evidence.offset_ms,
        "matched_seconds": evidence.matched_seconds,
        "matched_keyframes": evidence.matched_keyframes,
        "first_match_ts_ms": evidence.first_stream_ts_ms,
        "decided_at_ts_ms": evidence.last_stream_ts_ms,
        "delay_ms": delay_ms,
    });
    let mut case_id = None;
    if action != PolicyAction::Monitor {
        let id = new_id();
        let tiers = evidence_tiers(deps, &k.stream_id, reference_id, evidence).await?;
        let rows: Vec<EvidenceRow> = evidence
            .hits
            .iter()
            .map(|h| EvidenceRow {
                stream_ts_ms: h.stream_ts_ms,
                reference_ts_ms: h.reference_ts_ms,
                distance: h.distance,
                tier: tiers.get(&(h.stream_ts_ms, h.reference_ts_ms)).copied(),
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
                action: action.as_str(),
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
        &format!("stream.{}", action.as_str()),
        "stream",
        &k.stream_id,
        Some(&summary),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(stream_id = %k.stream_id, reference_id, action = action.as_str(), "decision");
    metrics::counter!("offside_decisions_total", "action" => action.as_str()).increment(1);
    Ok(Some(Decision { reference_id: reference_id.to_owned(), action, case_id, new: true }))
}

/// The tier of each of the evidence's hits, from the stored hits: keyed by (stream time,
/// reference time). One read, on a decision only.
async fn evidence_tiers(
    deps: &Deps,
    stream_id: &str,
    reference_id: &str,
    evidence: &Evidence,
) -> Result<HashMap<(i64, i64), HitTier>, HandleError> {
    let (Some(first), Some(last)) = (
        evidence.hits.iter().map(|h| h.stream_ts_ms).min(),
        evidence.hits.iter().map(|h| h.stream_ts_ms).max(),
    ) else {
        return Ok(HashMap::new());
    };
    let stored = streams::stream_hits(deps.store.pool(), stream_id, first, last).await?;
    Ok(stored
        .into_iter()
        .filter(|h| h.reference_id == reference_id)
        .filter_map(|h| Some(((h.hit.stream_ts_ms, h.hit.reference_ts_ms), h.hit.tier?)))
        .collect())
}

/// For a live reference, how far the re-stream trails the feed: capture time minus air time.
/// A live hit's reference time is its air time minus the feed's origin, so with the stream's
/// capture clock `c` (capture time minus stream time, from the deciding keyframe) the delay is
/// `c - offset - origin`. `None` for file references (and archived feeds, matched as files).
async fn live_delay_ms(
    deps: &Deps,
    k: &KeyframeMessage,
    reference: &crate::store::references::Reference,
    evidence: &Evidence,
) -> Result<Option<i64>, HandleError> {
    if reference.status != crate::domain::ReferenceStatus::Live {
        return Ok(None);
    }
    let Some(feed) = crate::live::store::get(deps.store.pool(), &reference.id).await? else {
        return Ok(None);
    };
    let captured_at = k.captured_at_ms.unwrap_or_else(now_ms);
    Ok(Some(captured_at - k.ts_ms - evidence.offset_ms - feed.origin_ms))
}
