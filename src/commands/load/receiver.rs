//! The webhook receiver inside the tool: checks each delivery's signature and times the
//! decisions it reports against the deciding keyframe's publication.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Shared, lock, now_us};

/// How far a delivery's signature time may be from its arrival (the tool and the service share
/// a clock).
const SIGNATURE_TOLERANCE_S: i64 = 300;

/// Starts the webhook receiver; returns its address and the task serving it until `cancel`.
pub(super) async fn start_receiver(
    listen: SocketAddr,
    secret: String,
    shared: Arc<Mutex<Shared>>,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::HeaderMap;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let secret = Arc::new(secret);
    let hook = move |headers: HeaderMap, body: Bytes| {
        let arrived_us = now_us();
        let secret = secret.clone();
        let shared = shared.clone();
        async move {
            let signed = headers
                .get(crate::enforce::webhook::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|sig| {
                    let now_s = arrived_us / 1_000_000;
                    crate::enforce::webhook::verify(
                        secret.as_bytes(),
                        sig,
                        &body,
                        now_s,
                        SIGNATURE_TOLERANCE_S,
                    )
                    .is_ok()
                });
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = lock(&shared);
            if !signed {
                s.bad_signatures += 1;
                return axum::http::StatusCode::UNAUTHORIZED;
            }
            let stream = event["data"]["stream_id"].as_str().unwrap_or_default().to_owned();
            let ts = event["data"]["decided_at_ts_ms"].as_i64().unwrap_or(-1);
            match s.pirate_sent_us.remove(&(stream.clone(), ts)) {
                Some(sent) => {
                    s.webhook_ms.push((arrived_us - sent) as f64 / 1000.0);
                    if let Some(created) = event["created_at"].as_str().and_then(parse_rfc3339_us) {
                        s.decision_ms.push((created - sent) as f64 / 1000.0);
                    }
                    s.killed.insert(stream);
                }
                None => s.unmatched_webhooks += 1,
            }
            axum::http::StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(hook));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok((addr, task))
}

pub(super) fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}
