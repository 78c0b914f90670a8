//! Console sessions: an API key exchanged for a browser session at `/console/login`.
//!
//! The session token is 32 random bytes, handed to the browser once in an HttpOnly cookie; only
//! its SHA-256 is stored (hex, as the row's id), for the reason [`super::keys`] gives for API
//! keys: a 256-bit random secret needs no slow hash, and one indexed equality lookup finds it.
//! A session is valid until it expires and only while its key is not revoked: [`find_active`]
//! joins `api_keys` on every request, so revoking a key signs its sessions out at once.

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::{Any, Executor, Row as _};

use super::keys::{Role, UnknownRole};
use super::now_ms;

/// A session just created: the secrets exist only here and in the browser.
#[derive(Debug)]
pub struct NewSession {
    /// The cookie value (64 hex characters); never stored.
    pub token: String,
    /// The CSRF token every form of this session carries.
    pub csrf_token: String,
    /// When it expires (ms since the Unix epoch).
    pub expires_at: i64,
}

/// A valid session and the key it speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    /// The stored id (hex SHA-256 of the token).
    pub id: String,
    /// The API key's id.
    pub key_id: String,
    /// The key's name, shown as who is signed in.
    pub key_name: String,
    /// The key's role.
    pub role: Role,
    /// The rights holder a `rights_holder` key is scoped to.
    pub rights_holder_id: Option<String>,
    /// The CSRF token of this session.
    pub csrf_token: String,
    /// When it expires (ms since the Unix epoch).
    pub expires_at: i64,
    /// When it was last used (ms since the Unix epoch).
    pub last_seen_at: i64,
}

fn random_hex() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored id of a session token.
pub fn session_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `key_id` lasting `lifetime_ms`.
///
/// # Errors
/// Any database error (a foreign-key violation for an unknown key).
pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    key_id: &str,
    lifetime_ms: i64,
) -> sqlx::Result<NewSession> {
    let token = random_hex();
    let csrf_token = random_hex();
    let now = now_ms();
    let expires_at = now.saturating_add(lifetime_ms);
    sqlx::query(
        "INSERT INTO console_sessions (id, key_id, csrf_token, created_at, expires_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $4)",
    )
    .bind(session_id(&token))
    .bind(key_id)
    .bind(&csrf_token)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(NewSession { token, csrf_token, expires_at })
}

/// The session of this cookie token, if it has not expired and its key is not revoked.
///
/// # Errors
/// Any database error.
pub async fn find_active<'e>(
    db: impl Executor<'e, Database = Any>,
    token: &str,
) -> sqlx::Result<Option<ActiveSession>> {
    let row = sqlx::query(
        "SELECT s.id, k.id, k.name, k.role, k.rights_holder_id, s.csrf_token, s.expires_at, \
         s.last_seen_at FROM console_sessions s JOIN api_keys k ON k.id = s.key_id \
         WHERE s.id = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL",
    )
    .bind(session_id(token))
    .bind(now_ms())
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get(3)?;
    Ok(Some(ActiveSession {
        id: row.try_get(0)?,
        key_id: row.try_get(1)?,
        key_name: row.try_get(2)?,
        role: role.parse().map_err(|err: UnknownRole| sqlx::Error::Decode(err.into()))?,
        rights_holder_id: row.try_get(4)?,
        csrf_token: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        last_seen_at: row.try_get(7)?,
    }))
}

/// Records that a session was used now (for operators: which sessions are idle).
///
/// # Errors
/// Any database error.
pub async fn touch<'e>(db: impl Executor<'e, Database = Any>, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE console_sessions SET last_seen_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms())
        .execute(db)
        .await?;
    Ok(())
}

/// Ends the session of this cookie token (sign-out). Returns false when there was none.
///
/// # Errors
/// Any database error.
pub async fn delete<'e>(db: impl Executor<'e, Database = Any>, token: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE id = $1")
        .bind(session_id(token))
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes sessions that expired before `now`; returns how many.
///
/// # Errors
/// Any database error.
pub async fn delete_expired<'e>(
    db: impl Executor<'e, Database = Any>,
    now: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
