//! The one rule for the API's loose parameters, applied by every handler that takes them (and
//! written into the OpenAPI document with the same constants, so the schema and the checks
//! cannot drift apart):
//!
//! - `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]; out of range answers 422, never a
//!   silent clamp.
//! - `cursor`: exactly the `next_cursor` of a previous page; anything else answers 400 (a
//!   garbage cursor is a client bug, not an empty page).
//! - names: 1 to [`MAX_NAME_CHARS`] characters once trimmed (reference titles: 1 to
//!   [`MAX_TITLE_CHARS`]), no control characters (NUL, newlines); otherwise 422.
//! - an enumerated value (a status, a role) outside its list answers 422 naming the list.
//! - an integer that does not parse answers 400; one out of its range (a negative `ts_ms`)
//!   answers 422.

use super::ApiError;

/// Default page size of every list.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of every list.
pub const MAX_LIMIT: i64 = 1000;
/// Longest name (a rights holder's, a key's), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest title of a reference, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// The pattern of a name, for the OpenAPI document: at least one character that is not a
/// space, and no control characters.
pub const NAME_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
/// The pattern of an id in a path (what the platform sends as a stream id, our UUIDs): no `/`
/// and no control characters.
pub const ID_PATTERN: &str = r"^[^/\u0000-\u001F\u007F-\u009F]+$";

/// The page size: `raw`, or the default; 422 outside 1..=[`MAX_LIMIT`].
///
/// # Errors
/// [`ApiError::Unprocessable`] when out of range.
pub fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    let limit = raw.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        )))
    }
}

/// A keyset cursor: the id (a UUID) of the last item of the previous page.
///
/// # Errors
/// [`ApiError::BadRequest`] when it is not one a page gave.
pub fn cursor(raw: Option<&str>) -> Result<Option<&str>, ApiError> {
    match raw {
        None => Ok(None),
        Some(c) if uuid::Uuid::try_parse(c).is_ok() => Ok(Some(c)),
        Some(_) => Err(ApiError::BadRequest(
            "cursor must be the next_cursor of a previous page".to_owned(),
        )),
    }
}

/// A name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
///
/// # Errors
/// [`ApiError::Unprocessable`] naming `field` and what is wrong.
pub fn name<'a>(field: &str, raw: &'a str) -> Result<&'a str, ApiError> {
    text(field, raw, MAX_NAME_CHARS)
}

/// A human text (a name, a title): trimmed, 1 to `max` characters, no control characters.
///
/// # Errors
/// [`ApiError::Unprocessable`] naming `field` and what is wrong.
pub fn text<'a>(field: &str, raw: &'a str, max: usize) -> Result<&'a str, ApiError> {
    let value = raw.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::Unprocessable(format!("{field} must be 1 to {max} characters")));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value)
}

/// An id used as a filter (a stream id, a reference id): 1 to 200 bytes, no `/` or control
/// characters, the rule stream ids follow when keyframes arrive.
///
/// # Errors
/// [`ApiError::Unprocessable`] naming `field`.
pub fn filter_id<'a>(field: &str, raw: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match raw {
        None => Ok(None),
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_ID_BYTES
                && !id.chars().any(|c| c.is_control() || c == '/') =>
        {
            Ok(Some(id))
        }
        Some(_) => Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to {MAX_ID_BYTES} bytes without '/' or control characters"
        ))),
    }
}

/// Longest id (stream, account, reference), in bytes.
pub const MAX_ID_BYTES: usize = 200;

/// An enumerated value: `parse`d, or 422 listing the accepted ones.
///
/// # Errors
/// [`ApiError::Unprocessable`] when `raw` is not one of `accepted`.
pub fn one_of<T>(
    field: &str,
    raw: &str,
    accepted: &[&str],
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "{field} must be one of {}, not {raw:?}",
            accepted.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_out_of_range_are_refused_not_clamped() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some(1)).unwrap(), 1);
        assert_eq!(limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
        assert!(limit(Some(-5)).is_err());
    }

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(name("title", "  Cup final ").unwrap(), "Cup final");
        assert!(name("title", "   ").is_err());
        assert!(name("title", "a\0b").is_err());
        assert!(name("title", &"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(name("title", &"é".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn a_cursor_is_an_id_or_a_400() {
        assert!(cursor(Some("garbage")).is_err());
        assert!(cursor(Some("0190a0e2-7c1b-7cc3-9a4e-2f3b8f6d1e00")).unwrap().is_some());
        assert_eq!(cursor(None).unwrap(), None);
    }
}
