//! Signing in to the console: an API key is exchanged for a server-side session
//! (`crate::store::sessions`) held in an HttpOnly, SameSite=Strict cookie scoped to /console.
//! The session resolves to the same [`Principal`] as the key would through the API, and only
//! while the key is not revoked.
//!
//! CSRF: every state-changing form carries the session's CSRF token in a hidden `csrf` field,
//! compared in constant time ([`Posted`]); the sign-in form, which has no session yet, carries a
//! random token that must equal the `offside_login_csrf` cookie set with the form (double
//! submit). Requests whose `Origin` names another site are refused before either check.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::view::{Layout, Nav, safe_next};
use super::{ConsoleError, Query, see_other};
use crate::http::auth::Principal;
use crate::http::{ApiError, AppState};
use crate::store::keys::{self, Role};
use crate::store::now_ms;
use crate::store::sessions::{self, ActiveSession};

/// How long a console session lasts: 12 hours, a reviewer's working day including a long
/// shift, so nobody signs in twice a day, while a cookie copied off a shared machine stops
/// working by the next day. Revoking the key ends its sessions at once whatever this says.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// The session cookie.
pub const SESSION_COOKIE: &str = "offside_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "offside_login_csrf";
/// How long a sign-in form stays usable (its CSRF cookie's lifetime), in seconds.
const LOGIN_FORM_SECONDS: i64 = 30 * 60;
/// A session's last use is written at most this often (not on every page view).
const TOUCH_EVERY_MS: i64 = 60_000;
/// The largest form body a console page posts (notes are at most 2000 characters).
const MAX_FORM_BYTES: usize = 256 * 1024;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
}

/// A signed-in console request: the caller as the API sees it, and its session.
pub struct Console {
    /// The caller, exactly as `Authorization: Bearer` with the same key resolves.
    pub principal: Principal,
    /// The session (the key's name, the CSRF token).
    pub session: ActiveSession,
    token: String,
}

impl Console {
    /// The layout of a page of this session, with `current` marked in the navigation bar.
    pub fn layout(&self, title: &str, current: &'static str) -> Layout {
        Layout {
            nav: Some(Nav::new(
                &self.session.key_name,
                self.session.role,
                &self.session.csrf_token,
                current,
            )),
            ..Layout::bare(title)
        }
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn random_hex() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `provided` equals `expected`, in time independent of where they differ.
pub fn tokens_match(expected: &str, provided: Option<&str>) -> bool {
    provided.is_some_and(|p| {
        !expected.is_empty() && bool::from(p.as_bytes().ct_eq(expected.as_bytes()))
    })
}

/// `; Secure` when the browser reached us over HTTPS (directly or through a proxy that says
/// so), so the cookie never travels in clear; plain-HTTP development setups keep working.
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let origin_https = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("https://"));
    if forwarded_https || origin_https { "; Secure" } else { "" }
}

async fn resolve(headers: &HeaderMap, state: &AppState) -> Result<Option<Console>, ConsoleError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let pool = state.store.pool();
    let Some(session) = sessions::find_active(pool, token).await? else { return Ok(None) };
    if now_ms() - session.last_seen_at > TOUCH_EVERY_MS
        && let Err(err) = sessions::touch(pool, &session.id).await
    {
        tracing::warn!(error = %err, "recording a console session's last use failed");
    }
    tracing::Span::current().record("key_id", session.key_id.as_str());
    let principal = Principal {
        key_id: session.key_id.clone(),
        role: session.role,
        rights_holder_id: session.rights_holder_id.clone(),
    };
    Ok(Some(Console { principal, session, token: token.to_owned() }))
}

impl FromRequestParts<AppState> for Console {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match resolve(&parts.headers, state).await? {
            // Ingest keys (the platform) have no console: nothing here is theirs.
            Some(console) if console.principal.role == Role::Ingest => {
                Err(ConsoleError::Api(ApiError::Forbidden))
            }
            Some(console) => Ok(console),
            None => {
                // Come back here after signing in, if this is a page (a form's target is not).
                let here = parts.uri.path_and_query().map_or("/console", |p| p.as_str());
                let next = if parts.method == axum::http::Method::GET {
                    safe_next(here).unwrap_or("/console")
                } else {
                    "/console"
                };
                Err(ConsoleError::SignIn { next: next.to_owned() })
            }
        }
    }
}

/// A url-encoded form's fields, in order (a field may repeat: the queue's bulk form sends one
/// `case_id` per selected row).
#[derive(Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// Fields already split (the upload form's text parts).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, or `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A form posted from a page of this session: the session is valid and the form's `csrf`
/// field equals the session's token, or the handler never runs (403 page).
pub struct Posted {
    /// The session.
    pub console: Console,
    /// The form's fields.
    pub form: FormData,
}

impl FromRequest<AppState> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
            ConsoleError::Api(ApiError::PayloadTooLarge("the form is too large".into()))
        })?;
        let form = FormData::parse(&bytes);
        if !tokens_match(console.csrf(), form.get("csrf")) {
            return Err(ConsoleError::Csrf);
        }
        Ok(Self { console, form })
    }
}

#[derive(askama::Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    error: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// The sign-in form, with a fresh double-submit token (cookie and hidden field).
async fn login_form(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    let next = q.next.as_deref().and_then(safe_next).unwrap_or("/console").to_owned();
    if let Some(console) = resolve(&headers, &state).await?
        && console.principal.role != Role::Ingest
    {
        return Ok(see_other(&next));
    }
    let csrf = random_hex();
    login_response(&headers, csrf, next, None, StatusCode::OK)
}

fn login_response(
    headers: &HeaderMap,
    csrf: String,
    next: String,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let cookie = format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; HttpOnly; SameSite=Strict; Path=/console/login; \
         Max-Age={LOGIN_FORM_SECONDS}{}",
        secure_attribute(headers)
    );
    let page = LoginPage { layout: Layout::bare("Sign in"), csrf, next, error };
    let html = askama::Template::render(&page)?;
    Ok((status, AppendHeaders([(SET_COOKIE, cookie)]), Html(html)).into_response())
}

/// `POST /console/login` (`key`, `csrf`, `next`): starts a session for an active key.
async fn login(State(state): State<AppState>, request: Request) -> Result<Response, ConsoleError> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        ConsoleError::Api(ApiError::PayloadTooLarge("the form is too large".into()))
    })?;
    let form = FormData::parse(&bytes);
    let expected = cookie(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or_default().to_owned();
    if !tokens_match(&expected, form.get("csrf")) {
        return Err(ConsoleError::Csrf);
    }
    let next = form.get("next").and_then(safe_next).unwrap_or("/console").to_owned();
    let secret = form.text("key").unwrap_or_default();
    let key = if secret.starts_with(keys::KEY_PREFIX) {
        keys::find_active_by_secret(state.store.pool(), secret).await?
    } else {
        None
    };
    let Some(key) = key else {
        tracing::info!("console sign-in refused: unknown or revoked key");
        return login_response(
            &parts.headers,
            expected,
            next,
            Some("That key is unknown or has been revoked."),
            StatusCode::UNAUTHORIZED,
        );
    };
    if key.role == Role::Ingest {
        return Err(ConsoleError::Api(ApiError::Forbidden));
    }
    let pool = state.store.pool();
    // Old sessions are swept here, where a new one is written anyway.
    sessions::delete_expired(pool, now_ms()).await?;
    let session = sessions::create(pool, &key.id, SESSION_LIFETIME_MS).await?;
    tracing::info!(key_id = %key.id, "console session started");
    let secure = secure_attribute(&parts.headers);
    let session_cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}{secure}",
        session.token,
        SESSION_LIFETIME_MS / 1000
    );
    let clear_login = format!(
        "{LOGIN_CSRF_COOKIE}=; HttpOnly; SameSite=Strict; Path=/console/login; Max-Age=0{secure}"
    );
    Ok((
        StatusCode::SEE_OTHER,
        AppendHeaders([
            (SET_COOKIE, session_cookie),
            (SET_COOKIE, clear_login),
            (axum::http::header::LOCATION, next),
        ]),
    )
        .into_response())
}

/// `POST /console/logout`: ends the session (CSRF-protected like every form).
async fn logout(State(state): State<AppState>, posted: Posted) -> Result<Response, ConsoleError> {
    sessions::delete(state.store.pool(), &posted.console.token).await?;
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0");
    Ok((
        StatusCode::SEE_OTHER,
        AppendHeaders([
            (SET_COOKIE, clear),
            (axum::http::header::LOCATION, "/console/login".to_owned()),
        ]),
    )
        .into_response())
}
