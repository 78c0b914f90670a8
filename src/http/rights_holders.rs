//! `/v1/rights-holders`: the owners of references (admin only). Creating one is audited.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json};
use crate::store::audit;
use crate::store::keys::Role;
use crate::store::rights_holders::{self, RightsHolder};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/rights-holders", post(create).get(list))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list))]
pub(super) struct Api;

/// A new rights holder.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRightsHolder {
    /// Display name, unique, 1–200 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

/// The created rights holder.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// Creates a rights holder.
#[utoipa::path(post, path = "/v1/rights-holders", tag = "rights holders", security(("bearer" = [])),
    request_body = CreateRightsHolder,
    responses((status = 201, body = Created), (status = 409, body = super::error::ErrorBody),
              (status = 401), (status = 403), (status = 422)))]
async fn create(
    principal: Principal,
    State(state): State<AppState>,
    Json(body): Json<CreateRightsHolder>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    principal.require(&[Role::Admin])?;
    let name = super::params::name("name", &body.name)?;
    let mut tx = state.store.pool().begin().await?;
    let holder = rights_holders::create(&mut *tx, name).await.map_err(|err| {
        if crate::store::is_unique_violation(&err) {
            ApiError::Conflict(format!("a rights holder named {name:?} already exists"))
        } else {
            err.into()
        }
    })?;
    let detail = json!({ "name": holder.name });
    audit::record(
        &mut *tx,
        &principal.key_id,
        "rights_holder.create",
        "rights_holder",
        &holder.id,
        Some(&detail),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Created { id: holder.id, name: holder.name })))
}

/// Lists every rights holder.
#[utoipa::path(get, path = "/v1/rights-holders", tag = "rights holders", security(("bearer" = [])),
    responses((status = 200, body = Vec<RightsHolder>), (status = 401), (status = 403)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<Vec<RightsHolder>>, ApiError> {
    principal.require(&[Role::Admin])?;
    Ok(Json(rights_holders::list(state.store.pool()).await?))
}
