//! `/v1/keys`: API keys (admin only). A key's secret appears once, in the creation answer.
//! Creating and revoking a key is audited (name, role and scope; never the secret), and the
//! last active admin key cannot be revoked: that would lock every admin out for good.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Path};
use crate::store::keys::{self, ApiKey, Revocation, Role};
use crate::store::{audit, rights_holders};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/keys", post(create).get(list)).route("/v1/keys/{id}", delete(revoke))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, revoke))]
pub(super) struct Api;

/// A new key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key may do.
    pub role: Role,
    /// A label, 1–200 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// Required for (and only for) the `rights_holder` role.
    #[serde(default)]
    pub rights_holder_id: Option<String>,
}

/// The created key. `key` is the secret: it is not stored and cannot be shown again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key's id, to revoke it.
    pub id: String,
    /// The secret, for `Authorization: Bearer`.
    pub key: String,
    /// Its role.
    pub role: Role,
    /// Its label.
    pub name: String,
    /// Its scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rights_holder_id: Option<String>,
}

/// Checks a key request and creates the key, audited as `actor`'s (shared with `offside keys
/// create`, whose actor is [`audit::COMMAND_LINE`]).
///
/// # Errors
/// [`ApiError::Unprocessable`] for a bad name, role/scope mismatch or unknown rights holder.
pub async fn create_key(
    store: &crate::store::Store,
    body: &CreateKey,
    actor: &str,
) -> Result<keys::NewKey, ApiError> {
    let name = super::params::name("name", &body.name)?;
    match (body.role, body.rights_holder_id.as_deref()) {
        (Role::RightsHolder, None) => {
            return Err(ApiError::Unprocessable(
                "a rights_holder key needs rights_holder_id".to_owned(),
            ));
        }
        (Role::RightsHolder, Some(id)) => {
            if rights_holders::get(store.pool(), id).await?.is_none() {
                return Err(ApiError::Unprocessable(format!("no rights holder with id {id:?}")));
            }
        }
        (_, Some(_)) => {
            return Err(ApiError::Unprocessable(
                "only rights_holder keys take a rights_holder_id".to_owned(),
            ));
        }
        (_, None) => {}
    }
    let mut tx = store.pool().begin().await?;
    let created = keys::create(&mut *tx, name, body.role, body.rights_holder_id.as_deref()).await?;
    let detail = json!({
        "name": created.key.name,
        "role": created.key.role,
        "rights_holder_id": created.key.rights_holder_id,
    });
    audit::record(&mut *tx, actor, "key.create", "key", &created.key.id, Some(&detail)).await?;
    tx.commit().await?;
    Ok(created)
}

/// Revokes a key, audited as `actor`'s, unless it is the last active admin key (shared with
/// `offside keys revoke`). Revoking a revoked key changes nothing and succeeds.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown id, [`ApiError::Conflict`] for the last admin key.
pub async fn revoke_key(
    store: &crate::store::Store,
    id: &str,
    actor: &str,
) -> Result<Revocation, ApiError> {
    let mut tx = store.pool().begin().await?;
    let outcome = keys::revoke_unless_last_admin(&mut tx, id).await?;
    match &outcome {
        Revocation::Revoked(key) => {
            let detail = json!({
                "name": key.name,
                "role": key.role,
                "rights_holder_id": key.rights_holder_id,
            });
            audit::record(&mut *tx, actor, "key.revoke", "key", id, Some(&detail)).await?;
            tx.commit().await?;
        }
        Revocation::AlreadyRevoked(_) => {}
        Revocation::LastAdmin(_) => {
            return Err(ApiError::Conflict(
                "this is the last active admin key: revoking it would leave no one able to \
                 manage keys. Create another admin key first, then revoke this one."
                    .to_owned(),
            ));
        }
        Revocation::NotFound => return Err(ApiError::NotFound("key")),
    }
    Ok(outcome)
}

/// Creates an API key.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", security(("bearer" = [])), request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 401), (status = 403), (status = 422)))]
async fn create(
    principal: Principal,
    State(state): State<AppState>,
    Json(body): Json<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    principal.require(&[Role::Admin])?;
    let created = create_key(&state.store, &body, &principal.key_id).await?;
    tracing::info!(key_id = %created.key.id, role = %created.key.role, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: created.key.id,
            key: created.secret,
            role: created.key.role,
            name: created.key.name,
            rights_holder_id: created.key.rights_holder_id,
        }),
    ))
}

/// Lists every key (without secrets), revoked ones included.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKey>), (status = 401), (status = 403)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    principal.require(&[Role::Admin])?;
    Ok(Json(keys::list(state.store.pool()).await?))
}

/// Revokes a key: requests with it get 401 from now on. The last active admin key cannot be
/// revoked (409): create another admin key first.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 401), (status = 403), (status = 404),
        (status = 409, body = super::error::ErrorBody, description = "The last active admin key")))]
async fn revoke(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Admin])?;
    if let Revocation::Revoked(_) = revoke_key(&state.store, &id, &principal.key_id).await? {
        tracing::info!(key_id = %id, "API key revoked");
    }
    Ok(StatusCode::NO_CONTENT)
}
