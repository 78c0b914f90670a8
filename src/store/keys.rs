//! API keys: random, shown once, stored as a SHA-256 digest and looked up by it.
//!
//! Why a fast hash and not a password hash (argon2, bcrypt): a key is 32 random bytes (256 bits
//! of entropy), so nobody can guess it or brute-force its digest; slow hashes only help for
//! low-entropy secrets such as passwords. A fast, unsalted digest also lets every request find
//! its key with one indexed equality lookup instead of trying a slow hash per stored key.

use std::fmt;
use std::str::FromStr;

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
// Dynamic SQL here only splices the constant column lists; values always go through binds.
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor, Row as _};

use super::{new_id, now_ms};

/// The prefix of every Offside API key, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "off_";

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: rights holders, keys, all references.
    Admin,
    /// Reviews flagged streams and cases; reads every reference.
    TrustSafety,
    /// Manages the references of one rights holder.
    RightsHolder,
    /// Submits keyframes of live streams (the platform).
    Ingest,
}

impl Role {
    /// The stored and wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::TrustSafety => "trust_safety",
            Self::RightsHolder => "rights_holder",
            Self::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the four roles.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, trust_safety, rights_holder or ingest)")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "trust_safety" => Ok(Self::TrustSafety),
            "rights_holder" => Ok(Self::RightsHolder),
            "ingest" => Ok(Self::Ingest),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Its id (UUID v7); used to revoke it.
    pub id: String,
    /// A label chosen by whoever created it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The rights holder it is scoped to (only for the `rights_holder` role).
    pub rights_holder_id: Option<String>,
    /// The first characters of the key, to tell keys apart without revealing them.
    pub key_prefix: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A freshly created key: the stored record and the secret, which exists only here.
#[derive(Debug)]
pub struct NewKey {
    /// The stored record.
    pub key: ApiKey,
    /// The secret to hand to the client, once.
    pub secret: String,
}

/// Generates a random key secret: `off_` followed by 32 random bytes in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The digest stored for a key secret.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a key. The caller checks that `rights_holder_id` is given exactly for the
/// `rights_holder` role (the database enforces it too).
///
/// # Errors
/// Any database error (a foreign-key violation when the rights holder does not exist).
pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
    role: Role,
    rights_holder_id: Option<&str>,
) -> sqlx::Result<NewKey> {
    let secret = generate_secret();
    let key = ApiKey {
        id: new_id(),
        name: name.to_owned(),
        role,
        rights_holder_id: rights_holder_id.map(str::to_owned),
        key_prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
        created_at: now_ms(),
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO api_keys (id, name, role, rights_holder_id, key_hash, key_prefix, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(role.as_str())
    .bind(key.rights_holder_id.as_deref())
    .bind(digest(&secret))
    .bind(&key.key_prefix)
    .bind(key.created_at)
    .execute(db)
    .await?;
    Ok(NewKey { key, secret })
}

const COLUMNS: &str = "id, name, role, rights_holder_id, key_prefix, created_at, revoked_at";

fn from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<ApiKey> {
    let role: String = row.try_get(2)?;
    Ok(ApiKey {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        role: role.parse().map_err(|err: UnknownRole| sqlx::Error::Decode(err.into()))?,
        rights_holder_id: row.try_get(3)?,
        key_prefix: row.try_get(4)?,
        created_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

/// Finds the live (not revoked) key with this secret.
///
/// # Errors
/// Any database error.
pub async fn find_active_by_secret<'e>(
    db: impl Executor<'e, Database = Any>,
    secret: &str,
) -> sqlx::Result<Option<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(digest(secret)).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

/// Lists every key (revoked ones too), oldest first.
///
/// # Errors
/// Any database error.
pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY id");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(db).await?;
    rows.iter().map(from_row).collect()
}

/// Finds a key by id, revoked or not.
///
/// # Errors
/// Any database error.
pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

/// Revokes a key without the last-admin check. Returns false when no such key exists;
/// revoking a revoked key keeps its first revocation time. The API and `offside keys revoke`
/// use [`revoke_unless_last_admin`]; this is for tests and tools that set up a database.
///
/// # Errors
/// Any database error.
pub async fn revoke<'e>(db: impl Executor<'e, Database = Any>, id: &str) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(db)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// What [`revoke_unless_last_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The key was active and is revoked now (as it stands after the revocation).
    Revoked(ApiKey),
    /// The key was already revoked; nothing changed (its first revocation time stays).
    AlreadyRevoked(ApiKey),
    /// The key is the last active admin key: revoking it would lock every admin out, so it
    /// was not revoked.
    LastAdmin(ApiKey),
    /// No key has this id.
    NotFound,
}

/// Revokes a key unless it is the last active admin key. Run it in a transaction (pass
/// `&mut *tx`) and record the audit entry in the same one before committing.
///
/// Two admins revoking each other at the same time must not both succeed. The check and the
/// revocation are one `UPDATE` (the key is revoked only if another active admin key exists),
/// but on PostgreSQL's read-committed isolation two such statements on different rows each see
/// the other admin still active. So every revocation first writes the oldest admin key's row,
/// which holds that row's lock until commit: revocations run one after the other, and the
/// second one's `UPDATE` (a new snapshot) sees the first one's result. On SQLite the first
/// write takes the database's write lock, with the same effect. One code path for both
/// databases, no deadlock (every revocation locks that one row first), and the lock row never
/// changes: keys are never deleted and ids grow with time.
///
/// # Errors
/// Any database error.
pub async fn revoke_unless_last_admin(
    conn: &mut AnyConnection,
    id: &str,
) -> sqlx::Result<Revocation> {
    sqlx::query(
        "UPDATE api_keys SET revoked_at = revoked_at \
         WHERE id = (SELECT MIN(id) FROM api_keys WHERE role = 'admin')",
    )
    .execute(&mut *conn)
    .await?;
    let sql = format!(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL \
         AND (role <> 'admin' OR EXISTS (SELECT 1 FROM api_keys other WHERE other.role = 'admin' \
         AND other.revoked_at IS NULL AND other.id <> $1)) RETURNING {COLUMNS}"
    );
    let row =
        sqlx::query(AssertSqlSafe(sql)).bind(id).bind(now_ms()).fetch_optional(&mut *conn).await?;
    if let Some(row) = row {
        return Ok(Revocation::Revoked(from_row(&row)?));
    }
    Ok(match get(&mut *conn, id).await? {
        None => Revocation::NotFound,
        Some(key) if key.revoked_at.is_some() => Revocation::AlreadyRevoked(key),
        Some(key) => Revocation::LastAdmin(key),
    })
}
