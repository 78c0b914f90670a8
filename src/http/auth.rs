//! Authentication: `Authorization: Bearer KEY` resolves to a [`Principal`], and every handler
//! states which roles may call it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::store::keys::{self, Role};

/// Who is calling: the key's id, role and (for rights holders) scope.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The API key's id.
    pub key_id: String,
    /// What the key may do.
    pub role: Role,
    /// The rights holder a `rights_holder` key is scoped to.
    pub rights_holder_id: Option<String>,
}

impl Principal {
    /// Allows the call only for the given roles.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] for any other role.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    /// The rights holder whose data alone this caller may see; `None` means all of it.
    pub fn owner_scope(&self) -> Option<&str> {
        match self.role {
            Role::RightsHolder => self.rights_holder_id.as_deref(),
            Role::Admin | Role::TrustSafety | Role::Ingest => None,
        }
    }

    /// Whether this caller may see something owned by `owner`.
    pub fn can_see(&self, owner: Option<&str>) -> bool {
        match self.role {
            Role::RightsHolder => owner.is_some() && owner == self.rights_holder_id.as_deref(),
            Role::Admin | Role::TrustSafety | Role::Ingest => true,
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
        let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
        let (scheme, secret) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
        let secret = secret.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || !secret.starts_with(keys::KEY_PREFIX) {
            return Err(ApiError::Unauthorized);
        }
        let key = keys::find_active_by_secret(state.store.pool(), secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        tracing::Span::current().record("key_id", key.id.as_str());
        Ok(Self { key_id: key.id, role: key.role, rights_holder_id: key.rights_holder_id })
    }
}
