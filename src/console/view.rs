//! What every page's template shares: the layout (title, asset URLs, navigation bar) and the
//! small formatting helpers that turn stored values into text. Templates only loop and branch;
//! everything they print is computed here or in the page modules.

use crate::store::keys::Role;

/// The base layout's values.
pub struct Layout {
    /// The page title.
    pub title: String,
    /// The stylesheet's URL (versioned).
    pub css: String,
    /// The script's URL (versioned).
    pub js: String,
    /// The navigation bar, for a signed-in page.
    pub nav: Option<Nav>,
}

impl Layout {
    /// A page outside a session (sign-in, errors).
    pub fn bare(title: &str) -> Self {
        Self { title: title.to_owned(), css: super::css_url(), js: super::js_url(), nav: None }
    }
}

/// The navigation bar: only the sections the role may use, who is signed in, and sign-out.
pub struct Nav {
    /// The key's name.
    pub key_name: String,
    /// The key's role.
    pub role: &'static str,
    /// The session's CSRF token (the sign-out form).
    pub csrf: String,
    /// Which section is open (`queue`, `streams`, `references`, `audit`, `webhooks`).
    pub current: &'static str,
    /// May open the streams pages.
    pub streams: bool,
    /// May open the audit page (admins, trust and safety: `crate::http::audit::READERS`).
    pub audit: bool,
    /// May open the webhook deliveries page.
    pub admin: bool,
}

impl Nav {
    /// The bar for a session of `role`.
    pub fn new(key_name: &str, role: Role, csrf: &str, current: &'static str) -> Self {
        Self {
            key_name: key_name.to_owned(),
            role: role.as_str(),
            csrf: csrf.to_owned(),
            current,
            streams: matches!(role, Role::Admin | Role::TrustSafety),
            audit: crate::http::audit::READERS.contains(&role),
            admin: role == Role::Admin,
        }
    }

    /// The CSS class of a section's link (marks the open one).
    pub fn class(&self, section: &str) -> &'static str {
        if self.current == section { "nav-link current" } else { "nav-link" }
    }
}

/// Percent-encodes a query parameter value.
pub fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A stored time (ms since the Unix epoch) as `2026-12-05 16:20:27 UTC`.
pub fn time(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => ms.to_string(),
    }
}

/// An optional stored time, or a dash.
pub fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_owned(), time)
}

/// How long ago `ms` was, compactly: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(now: i64, ms: i64) -> String {
    duration((now - ms).max(0))
}

/// A duration in milliseconds, compactly.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A stream or reference time in milliseconds as seconds: `12.0 s`.
pub fn seconds(ms: i64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let s = ms as f64 / 1000.0;
    format!("{s:.1} s")
}

/// A viewer count, or a dash when the platform sent none.
pub fn viewers(count: Option<i64>) -> String {
    count.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

/// The relative /console path to return to after signing in, if `next` is one: only paths
/// under /console, never another host (`//evil`, `/\evil`) nor a way out (`..`).
pub fn safe_next(next: &str) -> Option<&str> {
    let rest = next.strip_prefix("/console")?;
    let ok_start = rest.is_empty() || rest.starts_with('/') || rest.starts_with('?');
    let clean = !next.contains("//")
        && !next.contains('\\')
        && !next.contains("..")
        && !next.contains('#')
        && next.len() <= 2000
        && next.chars().all(|c| c.is_ascii_graphic());
    (ok_start && clean).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/console"), Some("/console"));
        assert_eq!(safe_next("/console/cases/abc?x=1"), Some("/console/cases/abc?x=1"));
        assert_eq!(safe_next("/console?order=reach"), Some("/console?order=reach"));
        for bad in [
            "https://evil.example/console",
            "//evil.example/console",
            "/console//evil.example",
            "/console/../v1/keys",
            "/consoleevil",
            "/v1/keys",
            "/console/\\evil",
            "/console/a b",
            "",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_read_compactly() {
        assert_eq!(duration(45_000), "45 s");
        assert_eq!(duration(12 * 60_000), "12 min");
        assert_eq!(duration(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(duration(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
        assert_eq!(seconds(12_000), "12.0 s");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
    }
}
