//! Review: what trust and safety do with cases and streams, and what anyone may see of them.
//!
//! The API (`/v1/cases`, `/v1/streams`) and the console (`/console`) are two faces of these
//! functions: each action checks the caller's role and tenancy here, once, and commits the
//! case, the stream's status, the audit entry and the webhook events in one transaction.
//! A rights holder never learns that another holder's case or stream exists: it gets 404.

pub mod bundle;
pub mod retention;

use serde::Serialize;
use serde_json::json;

use crate::domain::{Event, EventType};
use crate::http::auth::Principal;
use crate::http::{ApiError, AppState};
use crate::store::cases::{self, Case, CaseStatus, EvidenceRow};
use crate::store::keys::Role;
use crate::store::streams::{self, StreamStatus};
use crate::store::{audit, outbox, stills};

/// Longest reviewer note or reason kept, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// What a reviewer decides on a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseDecision {
    /// It is piracy: the stream is killed (`stream.killed`).
    Confirm,
    /// It is not: the case closes, and the stream goes back to live unless another open case
    /// holds it (a disputed kill is lifted too: `stream.restored`).
    Dismiss,
    /// Undo an enforced decision (a policy kill, a confirmed case, a disputed kill): the case
    /// is dismissed and the stream goes back to live (`stream.restored`).
    Restore,
}

impl CaseDecision {
    /// Parses `confirm`, `dismiss` or `restore`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirm" => Some(Self::Confirm),
            "dismiss" => Some(Self::Dismiss),
            "restore" => Some(Self::Restore),
            _ => None,
        }
    }

    /// The audit action's name.
    pub fn action(self) -> &'static str {
        match self {
            Self::Confirm => "case.confirm",
            Self::Dismiss => "case.dismiss",
            Self::Restore => "case.restore",
        }
    }
}

/// Which side of an evidence pair a still shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StillSide {
    /// The stream's keyframe.
    Stream,
    /// The reference's moment it matched.
    Reference,
}

impl StillSide {
    /// Parses `stream` or `reference` (the URL segment).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stream" => Some(Self::Stream),
            "reference" => Some(Self::Reference),
            _ => None,
        }
    }
}

/// A note or reason: trimmed, empty as `None`, at most [`MAX_NOTE_CHARS`].
///
/// # Errors
/// [`ApiError::Unprocessable`] when it is longer.
pub fn clean_note(note: Option<&str>) -> Result<Option<String>, ApiError> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::Unprocessable(format!(
            "a note is at most {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(note.map(str::to_owned))
}

/// A case the caller may see: admins and trust and safety every case, a rights holder only
/// cases on its own references, as [`for_viewer`] shows it to the caller.
///
/// # Errors
/// [`ApiError::Forbidden`] for the ingest role, [`ApiError::NotFound`] for an unknown case or
/// one the caller may not see.
pub async fn visible_case(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Case, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety, Role::RightsHolder])?;
    let case = cases::get(state.store.pool(), id).await?.ok_or(ApiError::NotFound("case"))?;
    if !principal.can_see(case.rights_holder_id.as_deref()) {
        return Err(ApiError::NotFound("case"));
    }
    Ok(for_viewer(principal, case))
}

/// A case as `principal` may read it. Trust and safety and admins read everything; a rights
/// holder reads the decision but not who took it or why: reviewers' notes and key ids are
/// internal to trust and safety (`decided_by` reads `policy` or `reviewer`, the note is absent).
/// The streamer's dispute reason stays: it is the platform's, relayed, not a reviewer's.
pub fn for_viewer(principal: &Principal, mut case: Case) -> Case {
    if principal.role == Role::RightsHolder {
        case.note = None;
        case.decided_by = case
            .decided_by
            .map(|by| if by == audit::POLICY { by } else { audit::REVIEWER.to_owned() });
    }
    case
}

/// Decides a case (see [`CaseDecision`]) and returns it as it now stands.
///
/// # Errors
/// 403 unless admin or trust and safety, 404 for an unknown case, 409 when the case's state
/// does not allow the decision (already decided; restoring a dismissed case), 422 for a note
/// that is too long.
pub async fn decide_case(
    state: &AppState,
    principal: &Principal,
    case_id: &str,
    decision: CaseDecision,
    note: Option<&str>,
) -> Result<Case, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    let note = clean_note(note)?;
    let case = cases::get(state.store.pool(), case_id).await?.ok_or(ApiError::NotFound("case"))?;
    let allowed: &[CaseStatus] = match decision {
        CaseDecision::Confirm | CaseDecision::Dismiss => &[CaseStatus::Open],
        CaseDecision::Restore => &[CaseStatus::Open, CaseStatus::Confirmed],
    };
    let to = match decision {
        CaseDecision::Confirm => CaseStatus::Confirmed,
        CaseDecision::Dismiss | CaseDecision::Restore => CaseStatus::Dismissed,
    };
    let mut tx = state.store.pool().begin().await?;
    if !cases::decide(&mut *tx, case_id, allowed, to, note.as_deref(), &principal.key_id).await? {
        return Err(ApiError::Conflict(match decision {
            CaseDecision::Restore => "the case is already dismissed".into(),
            _ => "the case is already decided".into(),
        }));
    }
    let detail = json!({
        "note": note,
        "stream_id": case.stream_id,
        "reference_id": case.reference_id,
        "disputed": case.disputed_at.is_some(),
    });
    audit::record(&mut *tx, &principal.key_id, decision.action(), "case", case_id, Some(&detail))
        .await?;
    let data = json!({
        "stream_id": case.stream_id,
        "reference_id": case.reference_id,
        "case_id": case_id,
        "by": principal.key_id,
    });
    let reason = format!("case {case_id}: {}", decision.action());
    match decision {
        CaseDecision::Confirm => {
            let killed = streams::transition(
                &mut *tx,
                &case.stream_id,
                &[StreamStatus::Live, StreamStatus::Flagged],
                StreamStatus::Killed,
                &reason,
            )
            .await?;
            if killed {
                outbox::enqueue(&mut tx, &Event::new(EventType::StreamKilled, data)).await?;
            }
        }
        CaseDecision::Dismiss | CaseDecision::Restore => {
            // The match row stays, so the reference never acts on this stream again. A plain
            // dismissal lifts a flag only when no other open case holds the stream; a restore,
            // or a dismissed dispute, lifts this case's kill too.
            let lifts_kill = decision == CaseDecision::Restore || case.disputed_at.is_some();
            let from: &[StreamStatus] = if lifts_kill {
                &[StreamStatus::Flagged, StreamStatus::Killed]
            } else {
                &[StreamStatus::Flagged]
            };
            let others = cases::count_open_for_stream(&mut *tx, &case.stream_id, case_id).await?;
            if (others == 0 || lifts_kill)
                && streams::transition(&mut *tx, &case.stream_id, from, StreamStatus::Live, &reason)
                    .await?
            {
                outbox::enqueue(&mut tx, &Event::new(EventType::StreamRestored, data)).await?;
            }
        }
    }
    tx.commit().await?;
    state.outbox_wake.notify_one();
    cases::get(state.store.pool(), case_id).await?.ok_or(ApiError::NotFound("case"))
}

/// The platform relays a streamer's dispute of a decision on `stream_id`: the stream's latest
/// enforced or open case is opened again, marked as disputed, at the head of the review queue.
/// The stream keeps its status until a reviewer decides (restore lifts the kill).
///
/// # Errors
/// 403 unless ingest or admin, 404 for an unknown stream, 409 when the stream has no case to
/// dispute (nothing was decided, or its cases were dismissed), 422 for an empty or long reason.
pub async fn dispute(
    state: &AppState,
    principal: &Principal,
    stream_id: &str,
    reason: &str,
) -> Result<Case, ApiError> {
    principal.require(&[Role::Ingest, Role::Admin])?;
    let reason = clean_note(Some(reason))?
        .ok_or_else(|| ApiError::Unprocessable("a dispute needs a reason".into()))?;
    let mut tx = state.store.pool().begin().await?;
    let Some(case_id) = cases::reopen_for_dispute(&mut tx, stream_id, &reason).await? else {
        drop(tx);
        return Err(match streams::get(state.store.pool(), stream_id).await? {
            None => ApiError::NotFound("stream"),
            Some(_) => ApiError::Conflict("the stream has no decision to dispute".into()),
        });
    };
    let detail = json!({ "reason": reason, "stream_id": stream_id });
    audit::record(&mut *tx, &principal.key_id, "case.dispute", "case", &case_id, Some(&detail))
        .await?;
    tx.commit().await?;
    cases::get(state.store.pool(), &case_id).await?.ok_or(ApiError::NotFound("case"))
}

/// Kills (`to` = killed) or restores (`to` = live) a stream by hand, with a reason.
///
/// # Errors
/// 403 unless admin or trust and safety, 404 for an unknown stream, 409 when its status does
/// not allow it, 422 for an empty or long reason.
pub async fn set_stream_status(
    state: &AppState,
    principal: &Principal,
    stream_id: &str,
    reason: &str,
    to: StreamStatus,
) -> Result<(), ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    let reason = clean_note(Some(reason))?
        .ok_or_else(|| ApiError::Unprocessable("reason must be 1 to 2000 characters".into()))?;
    let (from, event, action): (&[StreamStatus], _, _) = match to {
        StreamStatus::Killed => {
            (&[StreamStatus::Live, StreamStatus::Flagged], EventType::StreamKilled, "stream.kill")
        }
        _ => (
            &[StreamStatus::Killed, StreamStatus::Flagged],
            EventType::StreamRestored,
            "stream.restore",
        ),
    };
    // Writing first: on SQLite a transaction that reads first cannot always become a writer.
    let mut tx = state.store.pool().begin().await?;
    if !streams::transition(&mut *tx, stream_id, from, to, &reason).await? {
        drop(tx);
        return Err(match streams::get(state.store.pool(), stream_id).await? {
            None => ApiError::NotFound("stream"),
            Some(_) => ApiError::Conflict(format!(
                "the stream cannot be {} from its current status",
                to.as_str()
            )),
        });
    }
    let detail = json!({ "reason": reason });
    audit::record(&mut *tx, &principal.key_id, action, "stream", stream_id, Some(&detail)).await?;
    let data = json!({ "stream_id": stream_id, "reason": reason, "by": principal.key_id });
    outbox::enqueue(&mut tx, &Event::new(event, data)).await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    Ok(())
}

/// One evidence row with the stills that show it, as the API and the bundle present it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EvidencePair {
    /// The hit.
    #[serde(flatten)]
    pub row: EvidenceRow,
    /// The stream keyframe's still (same authorisation as the case), if one was kept.
    pub stream_still_url: Option<String>,
    /// The matched reference moment's still, if the reference has stills.
    pub reference_still_url: Option<String>,
}

/// A case with its evidence pairs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CaseView {
    /// The case.
    #[serde(flatten)]
    pub case: Case,
    /// The evidence with links to its stills (replaces the case's bare rows).
    pub evidence: Vec<EvidencePair>,
}

/// Which of a case's evidence rows have stills: `(stream still kept, reference still near)`,
/// by row. Two range reads whatever the number of rows.
///
/// # Errors
/// Any database error.
pub async fn stills_of(state: &AppState, case: &Case) -> Result<Vec<(bool, bool)>, ApiError> {
    let pool = state.store.pool();
    let stream_times = stills::stream_still_times(pool, &case.stream_id).await?;
    let reference_times = stills::reference_still_times(pool, &case.reference_id).await?;
    Ok(case
        .evidence
        .iter()
        .map(|e| {
            let stream = stream_times.binary_search(&e.stream_ts_ms).is_ok();
            let i = reference_times.partition_point(|t| *t < e.reference_ts_ms);
            let near = |j: usize| {
                reference_times.get(j).is_some_and(|t| {
                    (t - e.reference_ts_ms).abs() <= stills::REFERENCE_STILL_TOLERANCE_MS
                })
            };
            (stream, near(i) || (i > 0 && near(i - 1)))
        })
        .collect())
}

/// The case with its evidence pairs, still links under `prefix` (`/v1` or `/console`).
///
/// # Errors
/// Any database error.
pub async fn case_view(state: &AppState, case: Case, prefix: &str) -> Result<CaseView, ApiError> {
    let kept = stills_of(state, &case).await?;
    let evidence = case
        .evidence
        .iter()
        .zip(kept)
        .map(|(row, (stream, reference))| EvidencePair {
            row: *row,
            stream_still_url: stream
                .then(|| format!("{prefix}/cases/{}/stills/stream/{}", case.id, row.stream_ts_ms)),
            reference_still_url: reference.then(|| {
                format!("{prefix}/cases/{}/stills/reference/{}", case.id, row.reference_ts_ms)
            }),
        })
        .collect();
    Ok(CaseView { case, evidence })
}

/// A still of one of a case's evidence pairs. Only times that are in the case's evidence are
/// served: a case shows what matched, not the rest of the stream or the reference.
///
/// # Errors
/// What [`visible_case`] refuses, and 404 when the time is not in the evidence or no still was
/// kept for it.
pub async fn case_still(
    state: &AppState,
    principal: &Principal,
    case_id: &str,
    side: StillSide,
    ts_ms: i64,
) -> Result<Vec<u8>, ApiError> {
    let case = visible_case(state, principal, case_id).await?;
    let pool = state.store.pool();
    let in_evidence = case.evidence.iter().any(|e| match side {
        StillSide::Stream => e.stream_ts_ms == ts_ms,
        StillSide::Reference => e.reference_ts_ms == ts_ms,
    });
    if !in_evidence {
        return Err(ApiError::NotFound("still"));
    }
    let still = match side {
        StillSide::Stream => stills::stream_still(pool, &case.stream_id, ts_ms).await?,
        StillSide::Reference => stills::reference_still(pool, &case.reference_id, ts_ms).await?,
    };
    still.ok_or(ApiError::NotFound("still"))
}

/// A still of a stream's keyframe: trust and safety and admins (a rights holder sees a
/// stream's keyframes through its cases only).
///
/// # Errors
/// 403 for other roles, 404 when no still was kept at that time.
pub async fn stream_still(
    state: &AppState,
    principal: &Principal,
    stream_id: &str,
    ts_ms: i64,
) -> Result<Vec<u8>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    stills::stream_still(state.store.pool(), stream_id, ts_ms)
        .await?
        .ok_or(ApiError::NotFound("still"))
}

/// A still of a reference near `ts_ms`, for whoever may see the reference.
///
/// # Errors
/// 403 for ingest, 404 for an unknown reference, one the caller may not see, or no still near
/// that time.
pub async fn reference_still(
    state: &AppState,
    principal: &Principal,
    reference_id: &str,
    ts_ms: i64,
) -> Result<Vec<u8>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety, Role::RightsHolder])?;
    let pool = state.store.pool();
    let reference = crate::store::references::get(pool, reference_id)
        .await?
        .filter(|r| principal.can_see(r.rights_holder_id.as_deref()))
        .ok_or(ApiError::NotFound("reference"))?;
    stills::reference_still(pool, &reference.id, ts_ms).await?.ok_or(ApiError::NotFound("still"))
}
