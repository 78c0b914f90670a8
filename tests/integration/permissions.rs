//! Who may do what: one table of every operation of the OpenAPI document and what each role
//! gets from it, checked on SQLite and PostgreSQL; a test that fails when an operation is
//! missing from the table; and what the narrowed views leave out (the platform's view of a
//! stream, a rights holder's view of a case, trust and safety's view of the audit trail), in the
//! API and in the console. README's permission matrix is this table.

use crate::common::{Db, TestApp, WebhookReceiver, spawn_app_on};
use offside::domain::{Policy, ReferenceSource, ReferenceStatus};
use offside::store::cases::{self, CaseStatus, EvidenceRow, HitTier, NewCase};
use offside::store::keys::{self, Role};
use offside::store::references::{self, NewReference};
use offside::store::streams::{self, StreamMatch, StreamStatus};
use offside::store::{new_id, now_ms, stills};
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

/// What a role gets from an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No key needed: every caller gets the success status.
    Public,
    /// The success status.
    Yes,
    /// The success status with a narrowed answer (see the tests after the table).
    Limited,
    /// Its own data only: the success status on its own, 404 on another rights holder's (a
    /// collection lists only its own).
    Own,
    /// 403.
    No,
}

use Access::{Limited, No, Own, Public, Yes};

/// One operation: method, path template, success status, then admin, trust_safety,
/// rights_holder, ingest.
type Row = (&'static str, &'static str, u16, [Access; 4]);

/// The permission matrix. README's table says the same; keep them together.
const TABLE: &[Row] = &[
    ("GET", "/healthz", 200, [Public, Public, Public, Public]),
    ("GET", "/readyz", 200, [Public, Public, Public, Public]),
    ("GET", "/metrics", 200, [Public, Public, Public, Public]),
    ("GET", "/openapi.json", 200, [Public, Public, Public, Public]),
    ("POST", "/v1/rights-holders", 201, [Yes, No, No, No]),
    ("GET", "/v1/rights-holders", 200, [Yes, No, No, No]),
    ("POST", "/v1/keys", 201, [Yes, No, No, No]),
    ("GET", "/v1/keys", 200, [Yes, No, No, No]),
    ("DELETE", "/v1/keys/{id}", 204, [Yes, No, No, No]),
    ("POST", "/v1/references", 201, [Yes, No, Own, No]),
    ("GET", "/v1/references", 200, [Yes, Yes, Own, No]),
    ("GET", "/v1/references/{id}", 200, [Yes, Yes, Own, No]),
    ("DELETE", "/v1/references/{id}", 204, [Yes, No, Own, No]),
    ("PUT", "/v1/references/{id}/policy", 200, [Yes, No, Own, No]),
    ("POST", "/v1/references/{id}/hashes", 200, [Yes, No, Own, No]),
    ("GET", "/v1/streams", 200, [Yes, Yes, No, No]),
    ("GET", "/v1/streams/{id}", 200, [Yes, Yes, No, Limited]),
    ("POST", "/v1/streams/{id}/keyframes", 202, [Yes, No, No, Yes]),
    ("POST", "/v1/streams/{id}/end", 202, [Yes, No, No, Yes]),
    ("POST", "/v1/streams/{id}/kill", 200, [Yes, Yes, No, No]),
    ("POST", "/v1/streams/{id}/restore", 200, [Yes, Yes, No, No]),
    ("POST", "/v1/streams/{id}/dispute", 200, [Yes, No, No, Yes]),
    ("GET", "/v1/cases", 200, [Yes, Yes, Own, No]),
    ("GET", "/v1/cases/{id}", 200, [Yes, Yes, Own, No]),
    ("POST", "/v1/cases/{id}/decision", 200, [Yes, Yes, No, No]),
    ("GET", "/v1/cases/{id}/evidence", 200, [Yes, Yes, Own, No]),
    ("GET", "/v1/cases/{id}/stills/{side}/{ts_ms}", 200, [Yes, Yes, Own, No]),
    ("POST", "/v1/webhooks", 201, [Yes, No, No, No]),
    ("GET", "/v1/webhooks", 200, [Yes, No, No, No]),
    ("DELETE", "/v1/webhooks/{id}", 204, [Yes, No, No, No]),
    ("GET", "/v1/webhooks/{id}/deliveries", 200, [Yes, No, No, No]),
    ("GET", "/v1/audit", 200, [Yes, Limited, No, No]),
];

const ROLES: [Role; 4] = [Role::Admin, Role::TrustSafety, Role::RightsHolder, Role::Ingest];

#[test]
fn every_operation_of_the_openapi_document_is_in_the_table_and_no_other() {
    let doc = serde_json::to_value(offside::http::openapi()).expect("OpenAPI as JSON");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let in_table: Vec<(String, String)> =
        TABLE.iter().map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    let missing: Vec<_> = documented.iter().filter(|op| !in_table.contains(op)).collect();
    assert!(missing.is_empty(), "operations missing from the permission table: {missing:?}");
    let extra: Vec<_> = in_table.iter().filter(|op| !documented.contains(op)).collect();
    assert!(extra.is_empty(), "table rows that are not operations of the API: {extra:?}");
}

/// A rights holder with its key.
struct Holder {
    id: String,
    key: String,
}

/// One seeded case: a flagged stream, its match and open case on a reference, and a still.
struct Seeded {
    reference_id: String,
    stream_id: String,
    case_id: String,
}

/// The app with a key of every role, two rights holders and a webhook receiver.
struct World {
    app: TestApp,
    keys: [String; 4],
    mine: Holder,
    theirs: Holder,
    receiver: WebhookReceiver,
}

impl World {
    async fn new(db: Db) -> World {
        let app = spawn_app_on(db, |_| {}).await;
        let mine = holder(&app, "League A").await;
        let theirs = holder(&app, "League B").await;
        let keys = [
            app.admin_key.clone(),
            app.key_for(Role::TrustSafety, None).await,
            mine.key.clone(),
            app.key_for(Role::Ingest, None).await,
        ];
        let receiver = WebhookReceiver::start().await;
        World { app, keys, mine, theirs, receiver }
    }

    fn key(&self, role: Role) -> &str {
        &self.keys[ROLES.iter().position(|r| *r == role).expect("role")]
    }

    /// A ready hash-list reference of `owner`.
    async fn reference(&self, owner: &str) -> String {
        let id = new_id();
        references::insert(
            self.app.store.pool(),
            &NewReference {
                id: &id,
                rights_holder_id: Some(owner),
                title: "Final",
                source: ReferenceSource::Hashes,
                status: ReferenceStatus::Ready,
                policy: &Policy::default(),
                upload_path: None,
            },
        )
        .await
        .expect("reference");
        id
    }

    /// A flagged stream with an open case on a fresh reference of `owner`, as the pipeline
    /// writes them, with a stream still at 4 s.
    async fn case(&self, owner: &str) -> Seeded {
        let pool = self.app.store.pool();
        let reference_id = self.reference(owner).await;
        let stream_id = format!("stream-{}", uuid::Uuid::new_v4().simple());
        streams::ensure(pool, &stream_id, Some("user-7"), Some(10), None).await.expect("stream");
        streams::transition(pool, &stream_id, &[StreamStatus::Live], StreamStatus::Flagged, "flag")
            .await
            .expect("flag");
        let match_id = new_id();
        streams::insert_match(
            pool,
            &stream_id,
            &StreamMatch {
                id: match_id.clone(),
                reference_id: reference_id.clone(),
                action: "flag".into(),
                offset_ms: 30_000,
                matched_seconds: 4.0,
                matched_keyframes: 3,
                delay_ms: None,
                first_match_ts_ms: 0,
                decided_at_ts_ms: 4_000,
                created_at: now_ms(),
            },
        )
        .await
        .expect("match");
        let evidence = [EvidenceRow {
            stream_ts_ms: 4_000,
            reference_ts_ms: 34_000,
            distance: 8,
            tier: Some(HitTier::Pdq),
        }];
        let case_id = new_id();
        let mut conn = pool.acquire().await.expect("connection");
        cases::insert(
            &mut conn,
            &NewCase {
                id: &case_id,
                stream_id: &stream_id,
                reference_id: &reference_id,
                rights_holder_id: Some(owner),
                match_id: &match_id,
                action: "flag",
                status: CaseStatus::Open,
                evidence: &evidence,
            },
        )
        .await
        .expect("case");
        let still = offside::media::Still { ts_ms: 4_000, jpeg: b"\xFF\xD8\xFFstill".to_vec() };
        stills::insert_stream_still(&mut conn, &stream_id, &still).await.expect("still");
        Seeded { reference_id, stream_id, case_id }
    }

    async fn webhook(&self) -> String {
        let r = self
            .app
            .create_webhook(&self.app.admin_key, &self.receiver.url, &["stream.killed"], SECRET)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned()
    }

    /// The request of `row` on `owner`'s data (fresh data for operations that use it up):
    /// method, path and JSON or text body.
    async fn request(&self, row: &Row, owner: &str) -> (Method, String, Body) {
        let (method, template, _, _) = *row;
        let method: Method = method.parse().expect("method");
        let (path, body) = match (method.as_str(), template) {
            ("POST", "/v1/rights-holders") => {
                (template.to_owned(), Body::Json(json!({"name": new_id()})))
            }
            ("POST", "/v1/keys") => {
                (template.to_owned(), Body::Json(json!({"role": "ingest", "name": "platform"})))
            }
            ("DELETE", "/v1/keys/{id}") => {
                let key = keys::create(self.app.store.pool(), "spare", Role::Ingest, None)
                    .await
                    .expect("key");
                (format!("/v1/keys/{}", key.key.id), Body::None)
            }
            ("POST", "/v1/references") => {
                (template.to_owned(), Body::Json(json!({"title": "Semi-final"})))
            }
            (_, "/v1/references/{id}") => {
                (format!("/v1/references/{}", self.reference(owner).await), Body::None)
            }
            ("PUT", "/v1/references/{id}/policy") => (
                format!("/v1/references/{}/policy", self.reference(owner).await),
                Body::Json(json!({"action": "kill", "min_match_seconds": 4})),
            ),
            ("POST", "/v1/references/{id}/hashes") => (
                format!("/v1/references/{}/hashes", self.reference(owner).await),
                Body::Text(format!("0,{}\n", "a".repeat(64))),
            ),
            ("POST", "/v1/streams/{id}/keyframes") => (
                format!("/v1/streams/{}/keyframes?ts_ms=0", self.case(owner).await.stream_id),
                Body::Pdq(format!("{},90", "a".repeat(64))),
            ),
            ("POST", "/v1/streams/{id}/restore") => {
                let seeded = self.case(owner).await;
                streams::transition(
                    self.app.store.pool(),
                    &seeded.stream_id,
                    &[StreamStatus::Flagged],
                    StreamStatus::Killed,
                    "kill",
                )
                .await
                .expect("kill");
                (
                    format!("/v1/streams/{}/restore", seeded.stream_id),
                    Body::Json(json!({"reason": "licensed"})),
                )
            }
            (_, t) if t.starts_with("/v1/streams/{id}") => {
                let seeded = self.case(owner).await;
                let body = match t {
                    "/v1/streams/{id}/kill" | "/v1/streams/{id}/dispute" => {
                        Body::Json(json!({"reason": "because"}))
                    }
                    _ => Body::None,
                };
                (t.replace("{id}", &seeded.stream_id), body)
            }
            ("POST", "/v1/cases/{id}/decision") => (
                format!("/v1/cases/{}/decision", self.case(owner).await.case_id),
                Body::Json(json!({"decision": "confirm", "note": "clear piracy"})),
            ),
            (_, "/v1/cases/{id}/stills/{side}/{ts_ms}") => (
                format!("/v1/cases/{}/stills/stream/4000", self.case(owner).await.case_id),
                Body::None,
            ),
            (_, t) if t.starts_with("/v1/cases/{id}") => {
                (t.replace("{id}", &self.case(owner).await.case_id), Body::None)
            }
            ("POST", "/v1/webhooks") => (
                template.to_owned(),
                Body::Json(
                    json!({"url": self.receiver.url, "events": ["stream.killed"], "secret": SECRET}),
                ),
            ),
            (_, t) if t.starts_with("/v1/webhooks/{id}") => {
                (t.replace("{id}", &self.webhook().await), Body::None)
            }
            (_, t) => {
                assert!(!t.contains('{'), "no request built for {method} {t}");
                (t.to_owned(), Body::None)
            }
        };
        (method, path, body)
    }

    async fn send(&self, method: Method, path: &str, body: Body, key: Option<&str>) -> Response {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Text(text) => request.header(CONTENT_TYPE, "text/plain").body(text),
            Body::Pdq(text) => {
                request.header(CONTENT_TYPE, "application/vnd.offside.pdq").body(text)
            }
        };
        request.send().await.expect("request")
    }
}

const SECRET: &str = "a-signing-secret-of-some-length";

enum Body {
    None,
    Json(Value),
    Text(String),
    Pdq(String),
}

async fn holder(app: &TestApp, name: &str) -> Holder {
    let (id, key) = app.rights_holder(name).await;
    Holder { id, key }
}

/// Every row of the table, for every role, and without a key.
async fn every_route_answers_every_role_as_the_table_says(db: Db) {
    let world = World::new(db).await;
    let mut failures = Vec::new();
    for row in TABLE {
        let (method, template, ok, access) = *row;
        let ok = StatusCode::from_u16(ok).expect("status");
        // Without a key.
        let (m, path, body) = world.request(row, &world.mine.id).await;
        let status = world.send(m, &path, body, None).await.status();
        let expected = if access[0] == Public { ok } else { StatusCode::UNAUTHORIZED };
        if status != expected {
            failures.push(format!("{method} {template} without a key: {status}, not {expected}"));
        }
        for (role, access) in ROLES.iter().zip(access) {
            let key = world.key(*role);
            let (m, path, body) = world.request(row, &world.mine.id).await;
            let response = world.send(m, &path, body, Some(key)).await;
            let status = response.status();
            let expected = match access {
                Public | Yes | Limited | Own => ok,
                No => StatusCode::FORBIDDEN,
            };
            if status != expected {
                let text = response.text().await.unwrap_or_default();
                failures.push(format!(
                    "{method} {template} as {role}: {status}, not {expected} ({text})"
                ));
                continue;
            }
            // Everything: another holder's data too.
            if matches!(access, Yes | Limited) && template.contains('{') {
                let (m, path, body) = world.request(row, &world.theirs.id).await;
                let status = world.send(m, &path, body, Some(key)).await.status();
                if status != ok {
                    failures.push(format!(
                        "{method} {template} as {role} on another holder's: {status}, not {ok}"
                    ));
                }
            }
            if access != Own {
                continue;
            }
            // Own only: another holder's data is not found, and a list names none of it.
            if template.contains('{') {
                let (m, path, body) = world.request(row, &world.theirs.id).await;
                let status = world.send(m, &path, body, Some(key)).await.status();
                if status != StatusCode::NOT_FOUND {
                    failures.push(format!(
                        "{method} {template} as {role} on another holder's: {status}, not 404"
                    ));
                }
            } else if method == "GET" {
                let theirs = world.case(&world.theirs.id).await;
                let (m, path, body) = world.request(row, &world.mine.id).await;
                let text = world.send(m, &path, body, Some(key)).await.text().await.unwrap();
                if text.contains(&theirs.case_id) || text.contains(&theirs.reference_id) {
                    failures.push(format!("{method} {template} as {role} lists another holder's"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}

/// The platform reads a stream's status, never what matched it; a dispute answers with the
/// case's review state only.
async fn the_platform_reads_a_streams_status_but_not_its_matches(db: Db) {
    let world = World::new(db).await;
    let seeded = world.case(&world.mine.id).await;
    let path = format!("/v1/streams/{}", seeded.stream_id);
    let staff: Value =
        world.app.get(Some(world.key(Role::TrustSafety)), &path).await.json().await.unwrap();
    assert_eq!(staff["matches"][0]["reference_id"], seeded.reference_id.as_str());
    assert_eq!(staff["status_reason"], "flag");
    let platform: Value =
        world.app.get(Some(world.key(Role::Ingest)), &path).await.json().await.unwrap();
    assert_eq!(platform["status"], "flagged");
    assert_eq!(platform["id"], seeded.stream_id.as_str());
    assert!(platform.get("matches").is_none(), "{platform}");
    assert!(platform.get("status_reason").is_none(), "{platform}");
    assert!(!platform.to_string().contains(&seeded.reference_id), "{platform}");

    let r = world
        .send(
            Method::POST,
            &format!("/v1/streams/{}/dispute", seeded.stream_id),
            Body::Json(json!({"reason": "my own footage"})),
            Some(world.key(Role::Ingest)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let disputed: Value = r.json().await.unwrap();
    assert_eq!(disputed["id"], seeded.case_id.as_str());
    assert_eq!(disputed["status"], "open");
    assert!(!disputed.to_string().contains(&seeded.reference_id), "{disputed}");
    assert!(disputed.get("note").is_none() && disputed.get("decided_by").is_none(), "{disputed}");
}

/// A rights holder reads the decision on its case, not who took it or the reviewer's note;
/// trust and safety and admins read both. The bundle follows the same rule, and names no other
/// holder's reference matched on the same stream.
async fn rights_holders_read_decisions_without_reviewer_identities_or_notes(db: Db) {
    let world = World::new(db).await;
    let seeded = world.case(&world.mine.id).await;
    // Another holder's reference matched the same stream.
    let theirs = world.reference(&world.theirs.id).await;
    streams::insert_match(
        world.app.store.pool(),
        &seeded.stream_id,
        &StreamMatch {
            id: new_id(),
            reference_id: theirs.clone(),
            action: "monitor".into(),
            offset_ms: 0,
            matched_seconds: 4.0,
            matched_keyframes: 3,
            delay_ms: None,
            first_match_ts_ms: 0,
            decided_at_ts_ms: 4_000,
            created_at: now_ms(),
        },
    )
    .await
    .expect("match");
    let reviewer = world.key(Role::TrustSafety);
    let r =
        world.app.decide_case(reviewer, &seeded.case_id, "confirm", "watermark of League A").await;
    assert_eq!(r.status(), StatusCode::OK);

    let path = format!("/v1/cases/{}", seeded.case_id);
    let staff: Value = world.app.get(Some(reviewer), &path).await.json().await.unwrap();
    assert_eq!(staff["note"], "watermark of League A");
    let reviewer_id = staff["decided_by"].as_str().unwrap().to_owned();
    assert_ne!(reviewer_id, "reviewer");

    let holder: Value = world.app.get(Some(&world.mine.key), &path).await.json().await.unwrap();
    assert_eq!(holder["status"], "confirmed");
    assert_eq!(holder["decided_by"], "reviewer");
    assert!(holder["note"].is_null(), "{holder}");
    let listed = world.app.list_cases(&world.mine.key, "").await.text().await.unwrap();
    assert!(!listed.contains(&reviewer_id) && !listed.contains("watermark"), "{listed}");

    let bundle = world
        .app
        .get(Some(&world.mine.key), &format!("/v1/cases/{}/evidence", seeded.case_id))
        .await
        .bytes()
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle.to_vec())).expect("zip");
    let mut case_json = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("case.json").expect("case.json"),
        &mut case_json,
    )
    .unwrap();
    assert!(!case_json.contains(&reviewer_id), "{case_json}");
    assert!(!case_json.contains("watermark"), "{case_json}");
    assert!(!case_json.contains(&theirs), "another holder's reference: {case_json}");
    assert!(case_json.contains(&seeded.reference_id));
}

/// Every change is in the trail, with a readable actor; trust and safety read the review part
/// of it, admins all of it.
async fn every_change_is_audited_with_a_readable_actor(db: Db) {
    let world = World::new(db).await;
    let app = &world.app;
    let admin = &app.admin_key;
    let created: Value = app
        .create_key(admin, &json!({"role": "trust_safety", "name": "Dana"}))
        .await
        .json()
        .await
        .unwrap();
    let dana = created["key"].as_str().unwrap().to_owned();
    let dana_id = created["id"].as_str().unwrap().to_owned();
    let spare: Value = app
        .create_key(admin, &json!({"role": "ingest", "name": "old platform"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.revoke_key(admin, spare["id"].as_str().unwrap()).await.status(),
        StatusCode::NO_CONTENT
    );
    let reference: Value = app
        .create_hash_reference(&world.mine.key, &json!({"title": "Derby"}))
        .await
        .json()
        .await
        .unwrap();
    let reference = reference["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.set_policy(&world.mine.key, &reference, &json!({"action": "kill"})).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.import_hashes(&world.mine.key, &reference, &format!("0,{}\n", "b".repeat(64)))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.delete_reference(&world.mine.key, &reference).await.status(),
        StatusCode::NO_CONTENT
    );
    let hook = world.webhook().await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/webhooks/{hook}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let seeded = world.case(&world.mine.id).await;
    assert_eq!(
        app.decide_case(&dana, &seeded.case_id, "dismiss", "licensed").await.status(),
        StatusCode::OK
    );

    let all: Vec<Value> = app.audit(admin, "?limit=1000").await.json().await.unwrap();
    let has = |action: &str, target: &str| {
        all.iter().find(|e| e["action"] == action && e["target_id"] == target).cloned()
    };
    let key_create = has("key.create", &dana_id).expect("key.create");
    assert_eq!(key_create["actor_label"], "test admin (admin)");
    assert_eq!(key_create["detail"]["name"], "Dana");
    assert!(!key_create.to_string().contains(&dana), "the secret is never audited");
    assert!(has("key.revoke", spare["id"].as_str().unwrap()).is_some());
    assert!(has("rights_holder.create", &world.mine.id).is_some());
    for action in ["reference.create", "reference.policy", "reference.hashes", "reference.delete"] {
        let entry = has(action, &reference).unwrap_or_else(|| panic!("{action} missing"));
        assert_eq!(entry["actor_label"], "rights_holder key (rights_holder)", "{entry}");
        assert_eq!(entry["actor_role"], "rights_holder");
    }
    assert_eq!(has("reference.policy", &reference).unwrap()["detail"]["to"]["action"], "kill");
    for action in ["webhook.create", "webhook.delete"] {
        let entry = has(action, &hook).unwrap_or_else(|| panic!("{action} missing"));
        assert!(!entry.to_string().contains(SECRET), "the signing secret is never audited");
    }
    let decision = has("case.dismiss", &seeded.case_id).expect("case.dismiss");
    assert_eq!(decision["actor_label"], "Dana (trust_safety)");
    assert_eq!(decision["actor_name"], "Dana");

    // Trust and safety: the review part only.
    let review: Vec<Value> = app.audit(&dana, "?limit=1000").await.json().await.unwrap();
    assert!(review.iter().any(|e| e["action"] == "case.dismiss"));
    assert!(review.iter().any(|e| e["action"] == "reference.policy"));
    assert!(
        review
            .iter()
            .all(|e| ["case", "stream", "reference"].contains(&e["target_type"].as_str().unwrap())),
        "{review:?}"
    );
    for kind in ["key", "webhook", "rights_holder"] {
        assert_eq!(
            app.audit(&dana, &format!("?target_type={kind}")).await.status(),
            StatusCode::FORBIDDEN,
            "{kind}"
        );
    }
}

/// The console follows the same decisions: trust and safety reads the review part of the audit
/// trail (actors by name) but not the webhook deliveries; a rights holder reads neither.
async fn the_console_follows_the_same_decisions(db: Db) {
    let world = World::new(db).await;
    let app = &world.app;
    let created: Value = app
        .create_key(&app.admin_key, &json!({"role": "trust_safety", "name": "Dana"}))
        .await
        .json()
        .await
        .unwrap();
    let dana = created["key"].as_str().unwrap().to_owned();
    let seeded = world.case(&world.mine.id).await;
    let note = "note-7f3a: League A's watermark";
    assert_eq!(
        app.decide_case(&dana, &seeded.case_id, "confirm", note).await.status(),
        StatusCode::OK
    );

    let reviewer = sign_in(app, &dana).await;
    let audit = console_get(app, &reviewer, "/console/audit").await;
    assert_eq!(audit.status(), StatusCode::OK);
    let html = audit.text().await.unwrap();
    assert!(html.contains("Dana (trust_safety)"), "{html}");
    assert!(html.contains("case.confirm"));
    assert!(!html.contains("key.create"), "keys are the admin's");
    let case_page = console_get(app, &reviewer, &format!("/console/cases/{}", seeded.case_id))
        .await
        .text()
        .await
        .unwrap();
    assert!(case_page.contains("by Dana (trust_safety)"), "{case_page}");
    assert!(case_page.contains("note-7f3a"), "trust and safety read the note");
    assert_eq!(
        console_get(app, &reviewer, "/console/audit?target_type=key").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        console_get(app, &reviewer, "/console/webhooks").await.status(),
        StatusCode::FORBIDDEN
    );

    let holder = sign_in(app, &world.mine.key).await;
    assert_eq!(console_get(app, &holder, "/console/audit").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        console_get(app, &holder, "/console/webhooks").await.status(),
        StatusCode::FORBIDDEN
    );
    let page = console_get(app, &holder, &format!("/console/cases/{}", seeded.case_id))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Dana") && !page.contains("note-7f3a"), "{page}");
    assert!(page.contains("a reviewer"), "{page}");

    let admin = sign_in(app, &app.admin_key).await;
    let html = console_get(app, &admin, "/console/audit").await.text().await.unwrap();
    assert!(html.contains("key.create") && html.contains("test admin (admin)"), "{html}");
}

/// Signs in to the console with `key`; returns the session cookie's value.
async fn sign_in(app: &TestApp, key: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let form = client.get(app.url("/console/login")).send().await.expect("request");
    let cookie = cookie_of(&form, "offside_login_csrf");
    let html = form.text().await.expect("html");
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let csrf = html[start..].split('"').next().expect("value").to_owned();
    let r = client
        .post(app.url("/console/login"))
        .header("origin", &app.address)
        .header(COOKIE, format!("offside_login_csrf={cookie}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("key={key}&csrf={csrf}&next=%2Fconsole"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in");
    cookie_of(&r, "offside_session")
}

fn cookie_of(response: &Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (first, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = first.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

async fn console_get(app: &TestApp, session: &str, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .header(COOKIE, format!("offside_session={session}"))
        .send()
        .await
        .expect("request")
}

mod sqlite {
    use super::Db;

    #[tokio::test]
    async fn every_route_answers_every_role_as_the_table_says() {
        super::every_route_answers_every_role_as_the_table_says(Db::Sqlite).await;
    }

    #[tokio::test]
    async fn the_platform_reads_a_streams_status_but_not_its_matches() {
        super::the_platform_reads_a_streams_status_but_not_its_matches(Db::Sqlite).await;
    }

    #[tokio::test]
    async fn rights_holders_read_decisions_without_reviewer_identities_or_notes() {
        super::rights_holders_read_decisions_without_reviewer_identities_or_notes(Db::Sqlite).await;
    }

    #[tokio::test]
    async fn every_change_is_audited_with_a_readable_actor() {
        super::every_change_is_audited_with_a_readable_actor(Db::Sqlite).await;
    }

    #[tokio::test]
    async fn the_console_follows_the_same_decisions() {
        super::the_console_follows_the_same_decisions(Db::Sqlite).await;
    }
}

/// The PostgreSQL spot check: the whole table, and the audit trail's join.
mod postgres {
    use super::Db;

    #[tokio::test]
    async fn every_route_answers_every_role_as_the_table_says() {
        super::every_route_answers_every_role_as_the_table_says(Db::Postgres).await;
    }

    #[tokio::test]
    async fn every_change_is_audited_with_a_readable_actor() {
        super::every_change_is_audited_with_a_readable_actor(Db::Postgres).await;
    }
}
