//! The HTTP edge: every bad input gets a clear answer in the API's error shape, cheap checks run
//! before a 202, loose parameters follow one rule, slow clients are cut off, a database outage
//! answers 503 quickly, and `/readyz` checks RabbitMQ.

use std::io::Cursor;
use std::time::Duration;

use crate::common::*;
use offside::store::keys::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const HEX: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

/// A real JPEG of `width`×`height`.
fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::GrayImage::from_fn(width, height, |x, y| image::Luma([((x * 7 + y * 13) % 251) as u8]))
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .expect("encode");
    out
}

/// The body of an error response, checked to be `{"error": {"code", "message"}}`.
async fn error_body(response: reqwest::Response) -> (String, String) {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("application/json"), "content type {content_type:?}");
    let body: Value = response.json().await.expect("JSON body");
    let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("no code: {body}"));
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("no message: {body}"));
    assert!(!message.is_empty(), "{body}");
    (code.to_owned(), message.to_owned())
}

async fn hash_reference(app: &TestApp) -> String {
    let response = app.create_hash_reference(&app.admin_key, &json!({"title": "Hashes"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

// 1. The hash-list parser.

#[tokio::test]
async fn a_hash_line_without_a_trailing_newline_is_imported_instead_of_panicking() {
    let app = spawn_app().await;
    let id = hash_reference(&app).await;
    let response = app.import_hashes(&app.admin_key, &id, &format!("0,{HEX}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let imported: Value = response.json().await.unwrap();
    assert_eq!(imported["imported"], 1, "{imported}");
    let response =
        app.import_hashes(&app.admin_key, &id, &format!("1000,{HEX}\n2000,{HEX},7")).await;
    assert_eq!(response.json::<Value>().await.unwrap()["imported"], 2);
}

// 2. Errors from outside the handlers come in the API's shape.

#[tokio::test]
async fn a_keyframe_over_the_body_limit_answers_413_in_json() {
    let app = spawn_app_on(Db::Sqlite, |c| c.max_body_bytes = 4096).await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let response =
        app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", vec![0xFF; 64 * 1024]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(response).await.0, "payload_too_large");
}

#[tokio::test]
async fn a_wrong_method_answers_405_in_json_with_its_allow_header() {
    let app = spawn_app().await;
    let response = app.get(Some(&app.admin_key), "/v1/streams/s1/keyframes").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().get("allow").is_some());
    assert_eq!(error_body(response).await.0, "method_not_allowed");
}

#[tokio::test]
async fn a_very_long_uri_answers_414_in_json() {
    let app = spawn_app().await;
    let response =
        app.get(Some(&app.admin_key), &format!("/v1/streams?x={}", "a".repeat(20_000))).await;
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(error_body(response).await.0, "uri_too_long");
}

#[tokio::test]
async fn a_keyframe_without_a_content_type_answers_415_and_a_bad_integer_400_naming_the_query_parameter()
 {
    let app = spawn_app().await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let response = app
        .client
        .post(app.url("/v1/streams/s1/keyframes?ts_ms=0"))
        .bearer_auth(&ingest)
        .body(jpeg(64, 64))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_body(response).await.0, "unsupported_media_type");

    let response = app.post_keyframe(&ingest, "s1", "ts_ms=soon", "image/jpeg", jpeg(64, 64)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (code, message) = error_body(response).await;
    assert_eq!(code, "bad_request");
    assert!(message.contains("query parameter ts_ms"), "{message}");
    assert!(!message.contains("header"), "{message}");

    let response = app.post_keyframe(&ingest, "s1", "ts_ms=-5", "image/jpeg", jpeg(64, 64)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_body(response).await.1.contains("query parameter ts_ms"));
}

#[tokio::test]
async fn a_json_route_without_a_json_content_type_answers_415_in_json() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/streams/s1/kill"))
        .bearer_auth(&app.admin_key)
        .body(r#"{"reason":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_body(response).await.0, "unsupported_media_type");
}

#[tokio::test]
async fn a_reference_without_a_content_type_answers_415_in_json() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/references"))
        .bearer_auth(&app.admin_key)
        .body("title=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_body(response).await.1.contains("multipart/form-data"));
}

#[tokio::test]
async fn the_openapi_document_lists_the_json_errors_of_every_operation() {
    let app = spawn_app().await;
    let doc: Value = app.get(None, "/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["400", "422", "500", "503"] {
                if path == "/readyz" && status == "503" {
                    continue; // answers its Readiness body: which dependency is down
                }
                let schema = &responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path} lacks {status}"))["content"]["application/json"]
                    ["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
            assert!(responses["503"]["headers"].get("Retry-After").is_some(), "{method} {path}");
        }
    }
    let keyframe = &doc["paths"]["/v1/streams/{id}/keyframes"]["post"]["responses"];
    assert!(keyframe.get("413").is_some() && keyframe.get("415").is_some());
}

#[tokio::test]
async fn the_bounds_of_names_and_webhook_secrets_are_in_the_openapi_document_and_counted_alike() {
    let app = spawn_app().await;
    let doc: Value = app.get(None, "/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    for (schema, field, min, max) in [
        ("CreateRightsHolder", "name", 1, 200),
        ("CreateKey", "name", 1, 200),
        ("CreateWebhook", "secret", 16, 512),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_eq!((&property["minLength"], &property["maxLength"]), (&json!(min), &json!(max)));
    }
    // A name's pattern is the one rule the server checks (`params::name`).
    for schema in ["CreateRightsHolder", "CreateKey"] {
        let pattern = &schemas[schema]["properties"]["name"]["pattern"];
        assert_eq!(pattern, offside::http::params::NAME_PATTERN, "{schema}");
    }
    assert_eq!(schemas["CreateWebhook"]["properties"]["events"]["minItems"], 1);
    // A JSON Schema length counts characters, and so does the server: nine two-byte characters
    // are 18 bytes but too short a secret, sixteen are enough.
    let (url, events) = ("http://127.0.0.1:9/hook", ["stream.killed"]);
    let short = app.create_webhook(&app.admin_key, url, &events, &"é".repeat(9)).await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let enough = app.create_webhook(&app.admin_key, url, &events, &"é".repeat(16)).await;
    assert_eq!(enough.status(), StatusCode::CREATED);
}

// 3. Cheap checks before a 202.

#[tokio::test]
async fn keyframes_that_are_not_images_of_their_type_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let text = b"this is a text file, not a picture".to_vec();
    let response = app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", text).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_body(response).await.1.contains("not a JPEG"));

    let mut corrupt = vec![0xFF, 0xD8, 0xFF, 0xE0];
    corrupt.extend(std::iter::repeat_n(0x5A, 500));
    let response = app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", corrupt).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let response =
        app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", b"false".to_vec()).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let response = app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/png", jpeg(64, 64)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let response = app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", jpeg(8, 8)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_body(response).await.1.contains("too small"));

    let response = app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", jpeg(64, 48)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = app
        .post_keyframe(&ingest, "s1", "ts_ms=0", "application/vnd.offside.pdq", HEX.into())
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn ending_a_stream_with_a_body_is_refused() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/streams/s1/end"))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/json")
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn uploads_with_unknown_parts_empty_files_or_no_video_are_refused_at_once() {
    let app = spawn_app().await;
    let form =
        reqwest::multipart::Form::new().text("metadata", json!({"title": "x"}).to_string()).part(
            "fiel",
            reqwest::multipart::Part::bytes(b"\0\0\0\x20ftypisom".to_vec()).file_name("a.mp4"),
        );
    let response = app
        .client
        .post(app.url("/v1/references"))
        .bearer_auth(&app.admin_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_body(response).await.1.contains("\"fiel\""));

    let empty =
        app.upload_reference(&app.admin_key, &json!({"title": "x"}), "a.mp4", Vec::new()).await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_body(empty).await.1.contains("empty"));

    let text = b"Dear rights holder, this is a letter, not a match.".to_vec();
    let letter = app.upload_reference(&app.admin_key, &json!({"title": "x"}), "a.mp4", text).await;
    assert_eq!(letter.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_body(letter).await.1.contains("neither a video"));
    let listed: Value = app.list_references(&app.admin_key, "").await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn a_reference_that_fails_later_says_why_without_a_server_path() {
    let app = spawn_app().await;
    // An MP4 signature followed by noise: accepted (it looks like a video), fails in the job.
    let mut bytes = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec();
    bytes.extend((0..20_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let response =
        app.upload_reference(&app.admin_key, &json!({"title": "Noise"}), "n.mp4", bytes).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let reference = app.wait_until_settled(&app.admin_key, &id).await;
    assert_eq!(reference["status"], "failed", "{reference}");
    let reason = reference["error"].as_str().unwrap();
    assert!(!reason.contains(".upload"), "{reason}");
    assert!(!reason.contains('/'), "{reason}");
    assert!(reason.contains("file") || reason.contains("video"), "{reason}");
}

// 4. One rule for loose parameters.

#[tokio::test]
async fn a_garbage_cursor_answers_400_and_a_limit_out_of_range_422_on_every_list() {
    let app = spawn_app().await;
    let response = app.list_references(&app.admin_key, "?cursor=garbage").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_body(response).await.0, "bad_request");
    for list in ["/v1/references", "/v1/streams", "/v1/cases", "/v1/audit"] {
        for limit in ["0", "1001", "-3"] {
            let response = app.get(Some(&app.admin_key), &format!("{list}?limit={limit}")).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{list} limit={limit}");
            assert!(error_body(response).await.1.contains("limit"));
        }
        let response = app.get(Some(&app.admin_key), &format!("{list}?limit=1000")).await;
        assert_eq!(response.status(), StatusCode::OK, "{list}");
        let response = app.get(Some(&app.admin_key), &format!("{list}?limit=many")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{list}");
    }
    for list in ["/v1/streams", "/v1/cases"] {
        let response = app.get(Some(&app.admin_key), &format!("{list}?status=bogus")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{list}");
        assert!(error_body(response).await.1.contains("one of"));
    }
    let long = "s".repeat(201);
    let response = app.get(Some(&app.admin_key), &format!("/v1/cases?stream_id={long}")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn empty_titles_and_titles_with_control_characters_are_refused() {
    let app = spawn_app().await;
    for title in ["", "   ", "a\u{0}b", "line\nbreak"] {
        let response = app.create_hash_reference(&app.admin_key, &json!({"title": title})).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{title:?}");
        assert!(error_body(response).await.1.contains("title"));
    }
    let response = app
        .client
        .post(app.url("/v1/streams/s1/kill"))
        .bearer_auth(&app.admin_key)
        .json(&json!({"reason": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

// 6. Slow clients.

/// Opens a raw connection to the app.
async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    let address = app.address.trim_start_matches("http://");
    tokio::net::TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection (or 20 s pass: then the test fails).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn multipart_head(app: &TestApp, boundary: &str, length: usize) -> String {
    format!(
        "POST /v1/references HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n",
        app.admin_key
    )
}

fn multipart_start(boundary: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{{\"title\":\"Slow\"}}\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"m.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n\0\0\0\x20ftypisom"
    )
}

#[tokio::test]
async fn an_upload_that_stalls_after_its_headers_gets_408_in_json_and_its_connection_closed() {
    let app = spawn_app_on(Db::Sqlite, |c| c.client_idle_timeout_secs = 1).await;
    let mut stream = connect(&app).await;
    let boundary = "XyZ";
    stream.write_all(multipart_head(&app, boundary, 10_000_000).as_bytes()).await.unwrap();
    stream.write_all(multipart_start(boundary).as_bytes()).await.unwrap();
    // Then nothing.
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
    assert_eq!(uploads_in(&app), 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_app_on(Db::Sqlite, |c| c.client_idle_timeout_secs = 1).await;
    let mut stream = connect(&app).await;
    stream.write_all(b"POST /v1/references HTTP/1.1\r\nHost: test\r\n").await.unwrap();
    // The server closes the connection (hyper may answer 408 first); it does not wait forever.
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_slow_upload_that_keeps_sending_is_not_cut() {
    let app = spawn_app_on(Db::Sqlite, |c| c.client_idle_timeout_secs = 1).await;
    let boundary = "XyZ";
    let mut body = multipart_start(boundary).into_bytes();
    let noise: Vec<u8> =
        (0..4_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let end = format!("\r\n--{boundary}--\r\n");
    let length = body.len() + noise.len() + end.len();
    let mut stream = connect(&app).await;
    stream.write_all(multipart_head(&app, boundary, length).as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    body.clear();
    // Eight pieces 400 ms apart: over three seconds in all, never a second of silence.
    for piece in noise.chunks(500) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        stream.write_all(piece).await.unwrap();
    }
    stream.write_all(end.as_bytes()).await.unwrap();
    let mut head = vec![0_u8; 12];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 202", "{}", String::from_utf8_lossy(&head));
}

fn uploads_in(app: &TestApp) -> usize {
    std::fs::read_dir(app.config.uploads_dir()).map(|d| d.count()).unwrap_or(0)
}

// 7. A database outage (PostgreSQL).

#[tokio::test]
async fn a_database_outage_answers_503_with_retry_after_quickly() {
    let app = spawn_app_pg().await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let name = app.env.pg.as_ref().expect("a PostgreSQL database").name.clone();
    let admin = sqlx::AnyPool::connect(&pg_admin_url()).await.unwrap();
    // Only this test's database becomes unreachable: the shared server keeps running.
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )))
    .execute(&admin)
    .await
    .unwrap();

    let client = reqwest::Client::builder().timeout(Duration::from_secs(8)).build().unwrap();
    let response = client
        .post(app.url("/v1/streams/s1/keyframes?ts_ms=0"))
        .bearer_auth(&ingest)
        .header("content-type", "application/vnd.offside.pdq")
        .body(HEX)
        .send()
        .await
        .expect("an answer well before the pool's old 10 s wait");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(error_body(response).await.0, "unavailable");

    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

// 8. Readiness checks RabbitMQ.

#[tokio::test]
async fn readyz_reports_the_queue_of_an_amqp_deployment() {
    let app = spawn_app_amqp().await;
    let response = app.get(None, "/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["queue"], "ok", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
}

#[tokio::test]
async fn readyz_is_unavailable_when_rabbitmq_cannot_be_reached() {
    let app = spawn_app_on(Db::Sqlite, |c| {
        c.amqp_url = Some(offside::config::SecretUrl::new("amqp://guest:guest@127.0.0.1:9/%2f"));
        c.amqp_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    })
    .await;
    let response = app.get(None, "/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_ne!(body["checks"]["queue"], "ok", "{body}");
}
