//! The keyframe message: the one place where the wire form (AMQP headers or HTTP query
//! parameters, a content type and a body) becomes a typed, validated value.
//!
//! Every way a message can be unusable has its own [`MessageError`] variant; its `Display` text
//! is the dead-letter reason recorded in the `x-offside-error` header, so an operator reading the
//! dead-letter queue sees exactly why a message was refused.

use bytes::Bytes;
use fingerprints::Hash256;

/// Version of the message layout Offside writes (`x-offside-version` header). Messages without
/// the header are version 1: that is what platforms publish per the contract.
pub const MESSAGE_VERSION: u32 = 1;

/// Content type of a precomputed PDQ hash body (`HEX64` or `HEX64,QUALITY`).
pub const CONTENT_TYPE_PDQ: &str = "application/vnd.offside.pdq";
/// Content type of the stream-end message (empty body). An extension of the contract: the end of
/// a stream travels through the same exchange and queue as its keyframes.
pub const CONTENT_TYPE_STREAM_END: &str = "application/vnd.offside.stream-end";

/// Longest accepted stream or account id, in bytes (AMQP routing keys are at most 255 bytes).
pub const MAX_ID_LEN: usize = 200;

/// Why a message cannot be used. Permanent: redelivering it would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A required header or parameter is absent.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header or parameter is present but malformed.
    #[error("invalid header {name}: {reason}")]
    Invalid {
        /// The header's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The content type is none of the accepted ones.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// The body is empty.
    #[error("empty body")]
    EmptyBody,
    /// The body is larger than the configured limit.
    #[error("body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A `application/vnd.offside.pdq` body is not `HEX64` or `HEX64,QUALITY`.
    #[error("invalid pdq body: {0}")]
    InvalidHash(String),
    /// The message declares a layout version this build does not know.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(String),
    /// The body is not an image of its declared type, or its header says it is unusable.
    #[error("invalid image: {0}")]
    InvalidImage(String),
}

/// Smallest width and height of a usable keyframe: PDQ works on a 64×64 downsample, and a
/// smaller picture carries no evidence.
pub const MIN_IMAGE_SIDE: u32 = 32;
/// Largest width and height of a keyframe (8K is 7680 wide); beyond, decoding would cost a
/// worker far more memory than a keyframe is worth.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Checks what is cheap to check about an image body before it is accepted: its magic bytes
/// are those of `format`, and its header (read without decoding a pixel) gives dimensions
/// between [`MIN_IMAGE_SIDE`] and [`MAX_IMAGE_SIDE`]. Returns the dimensions. A body that
/// passes may still be damaged past its header; the worker dead-letters it then.
///
/// # Errors
/// [`MessageError::InvalidImage`] saying what is wrong.
pub fn check_image_header(format: ImageFormat, body: &[u8]) -> Result<(u32, u32), MessageError> {
    let (magic_ok, name, decoder_format) = match format {
        ImageFormat::Jpeg => {
            (body.starts_with(&[0xFF, 0xD8, 0xFF]), "JPEG", image::ImageFormat::Jpeg)
        }
        ImageFormat::Png => {
            (body.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG", image::ImageFormat::Png)
        }
        ImageFormat::Webp => (
            body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP",
            "WebP",
            image::ImageFormat::WebP,
        ),
    };
    if !magic_ok {
        return Err(MessageError::InvalidImage(format!(
            "the body is not a {name} image (its first bytes are not a {name} signature)"
        )));
    }
    let reader = image::ImageReader::with_format(std::io::Cursor::new(body), decoder_format);
    let (width, height) = reader.into_dimensions().map_err(|err| {
        MessageError::InvalidImage(format!("the {name} header cannot be read: {err}"))
    })?;
    if width < MIN_IMAGE_SIDE || height < MIN_IMAGE_SIDE {
        return Err(MessageError::InvalidImage(format!(
            "{width}x{height} is too small (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE})"
        )));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(MessageError::InvalidImage(format!(
            "{width}x{height} is too large (at most {MAX_IMAGE_SIDE} on each side)"
        )));
    }
    Ok((width, height))
}

/// The image formats a keyframe may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// `image/jpeg`
    Jpeg,
    /// `image/png`
    Png,
    /// `image/webp`
    Webp,
}

impl ImageFormat {
    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
        }
    }
}

/// What a keyframe carries: an encoded image to hash, or a hash computed by the platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// An encoded image.
    Image(ImageFormat, Bytes),
    /// A precomputed PDQ hash with its quality (100 when the sender gave none).
    Pdq {
        /// The hash.
        hash: Hash256,
        /// PDQ quality 0–100.
        quality: u8,
    },
}

/// One keyframe of one stream, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyframeMessage {
    /// The platform's stream id.
    pub stream_id: String,
    /// Stream time of the frame in milliseconds.
    pub ts_ms: i64,
    /// The streamer's account, if the platform sent it.
    pub account_id: Option<String>,
    /// Wall-clock capture time in Unix milliseconds, if sent.
    pub captured_at_ms: Option<i64>,
    /// How many people were watching the stream, if the platform sent it (orders the review
    /// queue by reach).
    pub viewers: Option<i64>,
    /// Content type as received (normalised to lower case, parameters stripped).
    pub content_type: String,
    /// The body as received.
    pub body: Bytes,
}

/// The end of a stream: its later keyframes are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEndMessage {
    /// The platform's stream id.
    pub stream_id: String,
}

/// Everything that travels on the keyframe queue.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueMessage {
    /// A keyframe to recognise.
    Keyframe(KeyframeMessage),
    /// A stream ended.
    StreamEnd(StreamEndMessage),
}

impl QueueMessage {
    /// The stream the message belongs to (also the AMQP routing key).
    pub fn stream_id(&self) -> &str {
        match self {
            QueueMessage::Keyframe(k) => &k.stream_id,
            QueueMessage::StreamEnd(e) => &e.stream_id,
        }
    }

    /// The keyframe's stream time; none for a stream's end.
    pub fn ts_ms(&self) -> Option<i64> {
        match self {
            QueueMessage::Keyframe(k) => Some(k.ts_ms),
            QueueMessage::StreamEnd(_) => None,
        }
    }
}

/// The untyped fields of a message as they arrive (from AMQP headers or HTTP parameters).
#[derive(Debug, Clone, Default)]
pub struct RawFields {
    /// `stream_id`
    pub stream_id: Option<String>,
    /// `ts_ms`, as text or an AMQP integer rendered to text.
    pub ts_ms: Option<String>,
    /// `account_id`
    pub account_id: Option<String>,
    /// `captured_at_ms`
    pub captured_at_ms: Option<String>,
    /// `viewers`
    pub viewers: Option<String>,
    /// `x-offside-version`
    pub version: Option<String>,
    /// The content type.
    pub content_type: Option<String>,
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// Largest accepted body in bytes.
    pub max_body_bytes: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        // A 1080p JPEG keyframe is typically 100–400 kB; 8 MiB leaves room for PNG while
        // refusing anything that would make a worker allocate without bound.
        MessageLimits { max_body_bytes: 8 * 1024 * 1024 }
    }
}

/// Parses the wire form into a typed message.
///
/// # Errors
/// A [`MessageError`] naming the first problem found; it is permanent.
pub fn parse(
    fields: RawFields,
    body: Bytes,
    limits: &MessageLimits,
) -> Result<QueueMessage, MessageError> {
    if let Some(v) = fields.version.as_deref() {
        match v.trim().parse::<u32>() {
            Ok(n) if n == MESSAGE_VERSION => {}
            _ => return Err(MessageError::UnsupportedVersion(v.to_owned())),
        }
    }
    let stream_id =
        parse_id("stream_id", fields.stream_id)?.ok_or(MessageError::Missing("stream_id"))?;
    let content_type = normalise_content_type(fields.content_type.as_deref().unwrap_or(""));
    if content_type == CONTENT_TYPE_STREAM_END {
        return Ok(QueueMessage::StreamEnd(StreamEndMessage { stream_id }));
    }
    let ts_ms = parse_int("ts_ms", fields.ts_ms)?.ok_or(MessageError::Missing("ts_ms"))?;
    if ts_ms < 0 {
        return Err(MessageError::Invalid { name: "ts_ms", reason: "negative".into() });
    }
    let account_id = parse_id("account_id", fields.account_id)?;
    let captured_at_ms = parse_int("captured_at_ms", fields.captured_at_ms)?;
    let viewers = parse_int("viewers", fields.viewers)?;
    if viewers.is_some_and(|v| v < 0) {
        return Err(MessageError::Invalid { name: "viewers", reason: "negative".into() });
    }
    if body.is_empty() {
        return Err(MessageError::EmptyBody);
    }
    if body.len() > limits.max_body_bytes {
        return Err(MessageError::TooLarge { size: body.len(), limit: limits.max_body_bytes });
    }
    let message = KeyframeMessage {
        stream_id,
        ts_ms,
        account_id,
        captured_at_ms,
        viewers,
        content_type,
        body,
    };
    // Validate the payload now so a bad hash is refused at the edge, not in the worker.
    message.payload()?;
    Ok(QueueMessage::Keyframe(message))
}

impl KeyframeMessage {
    /// The typed payload.
    ///
    /// # Errors
    /// [`MessageError::UnsupportedContentType`] or [`MessageError::InvalidHash`].
    pub fn payload(&self) -> Result<Payload, MessageError> {
        let format = match self.content_type.as_str() {
            "image/jpeg" | "image/jpg" => ImageFormat::Jpeg,
            "image/png" => ImageFormat::Png,
            "image/webp" => ImageFormat::Webp,
            CONTENT_TYPE_PDQ => return parse_pdq_body(&self.body),
            other => return Err(MessageError::UnsupportedContentType(other.to_owned())),
        };
        Ok(Payload::Image(format, self.body.clone()))
    }
}

/// Parses `HEX64` or `HEX64,QUALITY`.
///
/// # Errors
/// [`MessageError::InvalidHash`] with what is wrong.
pub fn parse_pdq_body(body: &[u8]) -> Result<Payload, MessageError> {
    let text =
        std::str::from_utf8(body).map_err(|_| MessageError::InvalidHash("not UTF-8".into()))?;
    let text = text.trim();
    let (hex, quality) = match text.split_once(',') {
        Some((h, q)) => {
            let q: u8 = q.trim().parse().map_err(|_| {
                MessageError::InvalidHash(format!("quality {q:?} is not an integer 0-100"))
            })?;
            if q > 100 {
                return Err(MessageError::InvalidHash(format!("quality {q} is above 100")));
            }
            (h.trim(), q)
        }
        None => (text, 100),
    };
    if hex.len() != 64 {
        return Err(MessageError::InvalidHash(format!(
            "expected 64 hex digits, got {}",
            hex.len()
        )));
    }
    let hash = Hash256::from_hex(hex).map_err(|e| MessageError::InvalidHash(e.to_string()))?;
    Ok(Payload::Pdq { hash, quality })
}

fn normalise_content_type(raw: &str) -> String {
    raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn parse_id(name: &'static str, value: Option<String>) -> Result<Option<String>, MessageError> {
    let Some(v) = value else { return Ok(None) };
    if v.is_empty() {
        return Err(MessageError::Invalid { name, reason: "empty".into() });
    }
    if v.len() > MAX_ID_LEN {
        return Err(MessageError::Invalid {
            name,
            reason: format!("longer than {MAX_ID_LEN} bytes"),
        });
    }
    if v.chars().any(|c| c.is_control() || c == '/') {
        return Err(MessageError::Invalid {
            name,
            reason: "contains '/' or control characters".into(),
        });
    }
    Ok(Some(v))
}

fn parse_int(name: &'static str, value: Option<String>) -> Result<Option<i64>, MessageError> {
    let Some(v) = value else { return Ok(None) };
    v.trim()
        .parse::<i64>()
        .map(Some)
        .map_err(|_| MessageError::Invalid { name, reason: format!("{v:?} is not an integer") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(ct: &str) -> RawFields {
        RawFields {
            stream_id: Some("s1".into()),
            ts_ms: Some("2000".into()),
            content_type: Some(ct.into()),
            ..RawFields::default()
        }
    }

    const HEX: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

    #[test]
    fn jpeg_keyframe_with_all_headers_parses() {
        let mut f = fields("image/jpeg; charset=binary");
        f.account_id = Some("acc".into());
        f.captured_at_ms = Some("1700000000000".into());
        f.viewers = Some("1234".into());
        let m = parse(f, Bytes::from_static(b"\xff\xd8"), &MessageLimits::default()).unwrap();
        let QueueMessage::Keyframe(k) = m else { panic!("expected a keyframe") };
        assert_eq!(k.ts_ms, 2000);
        assert_eq!(k.account_id.as_deref(), Some("acc"));
        assert_eq!(k.captured_at_ms, Some(1_700_000_000_000));
        assert_eq!(k.viewers, Some(1234));
        assert_eq!(k.content_type, "image/jpeg");
        assert!(matches!(k.payload().unwrap(), Payload::Image(ImageFormat::Jpeg, _)));
    }

    #[test]
    fn pdq_body_with_and_without_quality_parses() {
        let with_q = parse(
            fields(CONTENT_TYPE_PDQ),
            Bytes::from(format!("{HEX},87")),
            &MessageLimits::default(),
        )
        .unwrap();
        let QueueMessage::Keyframe(k) = with_q else { panic!("expected a keyframe") };
        assert!(matches!(k.payload().unwrap(), Payload::Pdq { quality: 87, .. }));
        let without =
            parse(fields(CONTENT_TYPE_PDQ), Bytes::from(HEX), &MessageLimits::default()).unwrap();
        let QueueMessage::Keyframe(k) = without else { panic!("expected a keyframe") };
        assert!(matches!(k.payload().unwrap(), Payload::Pdq { quality: 100, .. }));
    }

    #[test]
    fn every_unusable_message_gets_a_distinct_reason() {
        let l = MessageLimits { max_body_bytes: 10 };
        let body = || Bytes::from_static(b"abc");
        let mut no_stream = fields("image/jpeg");
        no_stream.stream_id = None;
        assert_eq!(parse(no_stream, body(), &l), Err(MessageError::Missing("stream_id")));
        let mut no_ts = fields("image/jpeg");
        no_ts.ts_ms = None;
        assert_eq!(parse(no_ts, body(), &l), Err(MessageError::Missing("ts_ms")));
        let mut bad_ts = fields("image/jpeg");
        bad_ts.ts_ms = Some("soon".into());
        assert!(matches!(
            parse(bad_ts, body(), &l),
            Err(MessageError::Invalid { name: "ts_ms", .. })
        ));
        assert!(matches!(
            parse(fields("text/plain"), body(), &l),
            Err(MessageError::UnsupportedContentType(ct)) if ct == "text/plain"
        ));
        assert_eq!(parse(fields("image/png"), Bytes::new(), &l), Err(MessageError::EmptyBody));
        assert!(matches!(
            parse(fields("image/png"), Bytes::from_static(&[0; 11]), &l),
            Err(MessageError::TooLarge { size: 11, limit: 10 })
        ));
        assert!(matches!(
            parse(fields(CONTENT_TYPE_PDQ), Bytes::from_static(b"abcd"), &MessageLimits::default()),
            Err(MessageError::InvalidHash(_))
        ));
        assert!(matches!(
            parse(
                fields(CONTENT_TYPE_PDQ),
                Bytes::from(format!("{HEX},101")),
                &MessageLimits::default()
            ),
            Err(MessageError::InvalidHash(_))
        ));
        let mut crowd = fields("image/jpeg");
        crowd.viewers = Some("-3".into());
        assert!(matches!(
            parse(crowd, body(), &l),
            Err(MessageError::Invalid { name: "viewers", .. })
        ));
        let mut v2 = fields("image/jpeg");
        v2.version = Some("2".into());
        assert_eq!(parse(v2, body(), &l), Err(MessageError::UnsupportedVersion("2".into())));
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::GrayImage::from_fn(width, height, |x, y| {
            image::Luma([((x * 7 + y * 3) % 256) as u8])
        })
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .unwrap();
        out
    }

    #[test]
    fn an_image_header_is_checked_without_decoding_it() {
        assert_eq!(check_image_header(ImageFormat::Jpeg, &jpeg(64, 48)), Ok((64, 48)));
        let text = b"hello, I am a text file and not a picture";
        assert!(matches!(
            check_image_header(ImageFormat::Jpeg, text),
            Err(MessageError::InvalidImage(m)) if m.contains("not a JPEG")
        ));
        let mut corrupt = vec![0xFF, 0xD8, 0xFF, 0xE0];
        corrupt.extend(std::iter::repeat_n(0x55, 200));
        assert!(matches!(
            check_image_header(ImageFormat::Jpeg, &corrupt),
            Err(MessageError::InvalidImage(m)) if m.contains("header")
        ));
        assert!(matches!(
            check_image_header(ImageFormat::Jpeg, &jpeg(8, 8)),
            Err(MessageError::InvalidImage(m)) if m.contains("too small")
        ));
        assert!(check_image_header(ImageFormat::Png, &jpeg(64, 64)).is_err());
    }

    #[test]
    fn stream_end_needs_only_the_stream_id() {
        let f = RawFields {
            stream_id: Some("s9".into()),
            content_type: Some(CONTENT_TYPE_STREAM_END.into()),
            ..RawFields::default()
        };
        assert_eq!(
            parse(f, Bytes::new(), &MessageLimits::default()),
            Ok(QueueMessage::StreamEnd(StreamEndMessage { stream_id: "s9".into() }))
        );
    }
}
