//! `/v1/webhooks`: takedown hooks (admin only). A webhook decides where takedown notices and
//! their signing secret go, so only an admin may add, read or remove one: a reviewer who could
//! would be able to redirect the platform's takedowns. Creation and deletion are audited (the
//! URL without credentials or query, never the secret).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Path};
use crate::domain::EventType;
use crate::enforce::webhook::check_url_resolved;
use crate::store::audit;
use crate::store::keys::Role;
use crate::store::outbox::{self, DeliveryState};
use crate::store::webhooks::{self, Webhook};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", post(create).get(list))
        .route("/v1/webhooks/{id}", delete(remove))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, remove, deliveries),
    components(schemas(CreateWebhook, Created, Webhook, DeliveryState))
)]
pub(super) struct Api;

/// A webhook to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// http(s) URL; loopback, private and other non-public addresses (IPv6 spellings of IPv4
    /// ones included) need `allow_private_urls` or `allow_private_networks`.
    pub url: String,
    /// Event types: stream.flagged, stream.killed, stream.restored, case.created.
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    /// Signing secret, 16 to 512 characters.
    #[schema(min_length = 16, max_length = 512)]
    pub secret: String,
}

/// The registered webhook (without its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    /// Its id.
    pub id: String,
    /// Its URL.
    pub url: String,
    /// Its events.
    pub events: Vec<String>,
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = CreateWebhook,
    responses((status = 201, body = Created), (status = 401), (status = 403), (status = 422)))]
async fn create(
    principal: Principal,
    State(state): State<AppState>,
    Json(body): Json<CreateWebhook>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    principal.require(&[Role::Admin])?;
    let url = check_url_resolved(body.url.trim(), &state.config.outbound_policy())
        .await
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if body.events.is_empty() {
        return Err(ApiError::Unprocessable("events must name at least one event type".into()));
    }
    let mut events = Vec::new();
    for e in &body.events {
        let kind = EventType::parse(e)
            .ok_or_else(|| ApiError::Unprocessable(format!("unknown event type {e:?}")))?;
        if !events.contains(&kind.as_str().to_owned()) {
            events.push(kind.as_str().to_owned());
        }
    }
    if !(16..=512).contains(&body.secret.chars().count()) {
        return Err(ApiError::Unprocessable("secret must be 16 to 512 characters".into()));
    }
    let mut tx = state.store.pool().begin().await?;
    let hook =
        webhooks::create(&mut *tx, url.as_str(), &events, &body.secret, &principal.key_id).await?;
    audit::record(
        &mut *tx,
        &principal.key_id,
        "webhook.create",
        "webhook",
        &hook.id,
        Some(&json!({"url": url_for_audit(&hook.url), "events": hook.events})),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Created { id: hook.id, url: hook.url, events: hook.events })))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Vec<Webhook>), (status = 401), (status = 403)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    principal.require(&[Role::Admin])?;
    Ok(Json(webhooks::list(state.store.pool()).await?))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn remove(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Admin])?;
    // Read before the transaction: on SQLite a transaction that reads first cannot always
    // become a writer. A webhook never changes, so what is read is what is deleted.
    let hook =
        webhooks::get(state.store.pool(), &id).await?.ok_or(ApiError::NotFound("webhook"))?;
    let mut tx = state.store.pool().begin().await?;
    if !webhooks::delete(&mut *tx, &id).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    let detail = json!({"url": url_for_audit(&hook.url), "events": hook.events});
    audit::record(&mut *tx, &principal.key_id, "webhook.delete", "webhook", &id, Some(&detail))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = Vec<DeliveryState>), (status = 401), (status = 403), (status = 404)))]
async fn deliveries(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<DeliveryState>>, ApiError> {
    principal.require(&[Role::Admin])?;
    webhooks::get(state.store.pool(), &id).await?.ok_or(ApiError::NotFound("webhook"))?;
    Ok(Json(outbox::deliveries(state.store.pool(), &id, 200).await?))
}

/// A webhook URL as the audit trail keeps it: scheme, host, port and path, without user
/// information or query (either may carry a token).
fn url_for_audit(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::url_for_audit;

    #[test]
    fn audited_webhook_urls_lose_credentials_and_query() {
        assert_eq!(
            url_for_audit("https://user:pw@hooks.example:8443/takedown?token=s3cret#x"),
            "https://hooks.example:8443/takedown"
        );
        assert_eq!(url_for_audit("http://127.0.0.1:9/hook"), "http://127.0.0.1:9/hook");
    }
}
