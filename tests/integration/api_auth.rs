//! Authentication and tenancy over HTTP: 401 without a valid key, 403 for the wrong role on
//! every route family, rights holders fenced off from each other's references (404), and the
//! last admin key that cannot be revoked. The full role matrix is permissions.rs.

use crate::common::{Db, error_code, spawn_app, spawn_app_on};
use offside::store::keys::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn requests_without_a_key_or_with_an_unknown_key_get_401() {
    let app = spawn_app().await;
    let missing = app.get(None, "/v1/references").await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(missing).await, "unauthorized");
    let unknown = app
        .get(
            Some("off_0000000000000000000000000000000000000000000000000000000000000000"),
            "/v1/references",
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let garbage = app.get(Some("not-a-key"), "/v1/keys").await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
}

async fn revoked_key_gets_401(db: Db) {
    let app = spawn_app_on(db, |_| {}).await;
    let response =
        app.create_key(&app.admin_key, &json!({"role": "trust_safety", "name": "reviewer"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap();
    assert_eq!(app.list_references(key, "").await.status(), StatusCode::OK);

    let revoked = app.revoke_key(&app.admin_key, created["id"].as_str().unwrap()).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.list_references(key, "").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.revoke_key(&app.admin_key, "no-such-key").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_key_gets_401_on_sqlite() {
    revoked_key_gets_401(Db::Sqlite).await;
}

#[tokio::test]
async fn a_revoked_key_gets_401_on_postgres() {
    revoked_key_gets_401(Db::Postgres).await;
}

#[tokio::test]
async fn roles_without_the_right_get_403_on_every_route_family() {
    let app = spawn_app().await;
    let (holder, rh_key) = app.rights_holder("League").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let reviewer = app.key_for(Role::TrustSafety, None).await;

    // Admin-only families.
    for key in [&rh_key, &ingest, &reviewer] {
        assert_eq!(app.create_rights_holder(key, "Other").await.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.get(Some(key), "/v1/rights-holders").await.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            app.create_key(key, &json!({"role": "admin", "name": "x"})).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(app.list_keys(key).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.revoke_key(key, "any").await.status(), StatusCode::FORBIDDEN);
    }
    // References: ingest may neither read nor write; trust & safety may read but not write.
    let created: Value =
        app.create_hash_reference(&rh_key, &json!({"title": "Final"})).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.list_references(&ingest, "").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get_reference(&ingest, id).await.status(), StatusCode::FORBIDDEN);
    for key in [&ingest, &reviewer] {
        assert_eq!(
            app.create_hash_reference(key, &json!({"title": "x"})).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(app.delete_reference(key, id).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            app.set_policy(key, id, &json!({"action": "kill"})).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.import_hashes(key, id, &format!("0,{}", "a".repeat(64))).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(app.get_reference(&reviewer, id).await.status(), StatusCode::OK);
    let forbidden = app.create_rights_holder(&rh_key, "x").await;
    assert_eq!(error_code(forbidden).await, "forbidden");
    let _ = holder;
}

#[tokio::test]
async fn rights_holder_cannot_read_list_change_or_delete_another_holders_reference() {
    let app = spawn_app().await;
    let (_a, key_a) = app.rights_holder("A").await;
    let (_b, key_b) = app.rights_holder("B").await;
    let created: Value = app
        .create_hash_reference(&key_b, &json!({"title": "B's match"}))
        .await
        .json()
        .await
        .unwrap();
    let b_ref = created["id"].as_str().unwrap();

    assert_eq!(app.get_reference(&key_a, b_ref).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.set_policy(&key_a, b_ref, &json!({"action": "monitor"})).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.import_hashes(&key_a, b_ref, &format!("0,{}", "a".repeat(64))).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.delete_reference(&key_a, b_ref).await.status(), StatusCode::NOT_FOUND);
    let listed: Value = app.list_references(&key_a, "").await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));

    // B still has it, untouched, and the admin sees it too.
    let still: Value = app.get_reference(&key_b, b_ref).await.json().await.unwrap();
    assert_eq!(still["policy"]["action"], "flag");
    assert_eq!(still["frames"], 0);
    assert_eq!(app.get_reference(&app.admin_key, b_ref).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn rights_holder_keys_need_an_existing_rights_holder_and_other_roles_none() {
    let app = spawn_app().await;
    let without =
        app.create_key(&app.admin_key, &json!({"role": "rights_holder", "name": "x"})).await;
    assert_eq!(without.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app
        .create_key(
            &app.admin_key,
            &json!({"role": "rights_holder", "name": "x", "rights_holder_id": "nope"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let scoped_admin = app
        .create_key(
            &app.admin_key,
            &json!({"role": "admin", "name": "x", "rights_holder_id": "nope"}),
        )
        .await;
    assert_eq!(scoped_admin.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_role = app.create_key(&app.admin_key, &json!({"role": "root", "name": "x"})).await;
    assert_eq!(bad_role.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(bad_role).await, "invalid");
}

#[tokio::test]
async fn duplicate_rights_holder_names_get_409() {
    let app = spawn_app().await;
    assert_eq!(
        app.create_rights_holder(&app.admin_key, "Serie A").await.status(),
        StatusCode::CREATED
    );
    let again = app.create_rights_holder(&app.admin_key, "Serie A").await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(again).await, "conflict");
}

#[tokio::test]
async fn operations_endpoints_need_no_key_and_unknown_routes_answer_json_404() {
    let app = spawn_app().await;
    assert_eq!(app.get(None, "/healthz").await.status(), StatusCode::OK);
    let ready: Value = app.get(None, "/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
    let _ = app.list_references(&app.admin_key, "").await;
    let metrics = app.get(None, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("offside_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/references\""), "{metrics}");
    let spec: Value = app.get(None, "/openapi.json").await.json().await.unwrap();
    assert!(spec["paths"]["/v1/references/{id}/hashes"]["post"].is_object());
    assert!(spec["paths"]["/v1/keys"]["post"].is_object());
    let missing = app.get(None, "/v1/nothing-here").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "not_found");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.get(None, "/healthz").await;
    assert!(response.headers().get("x-request-id").is_some());
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me");
}

/// The last active admin key cannot be revoked, by the API or the command line: it would lock
/// every admin out. With two admins, one may go; then the other is the last.
async fn the_last_admin_key_cannot_be_revoked(db: Db) {
    let app = spawn_app_on(db, |_| {}).await;
    let keys: Vec<Value> = app.list_keys(&app.admin_key).await.json().await.unwrap();
    let only_admin = keys[0]["id"].as_str().unwrap().to_owned();
    let refused = app.revoke_key(&app.admin_key, &only_admin).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
    assert!(body["error"]["message"].as_str().unwrap().contains("last active admin key"));
    assert_eq!(app.list_keys(&app.admin_key).await.status(), StatusCode::OK, "still signed in");

    // The command line refuses too, and says why.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_offside"))
        .args(["keys", "revoke", &only_admin, "--database-url", &app.env.database_url])
        .output()
        .expect("offside runs");
    assert!(!cli.status.success());
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("last active admin key"), "{stderr}");

    let second: Value = app
        .create_key(&app.admin_key, &json!({"role": "admin", "name": "second admin"}))
        .await
        .json()
        .await
        .unwrap();
    let second_key = second["key"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    // A non-admin key never counts as an admin.
    let _ = app.key_for(Role::TrustSafety, None).await;
    assert_eq!(app.revoke_key(second_key, &only_admin).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.list_keys(&app.admin_key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.revoke_key(second_key, second_id).await.status(), StatusCode::CONFLICT);
    // Revoking a revoked key changes nothing and succeeds.
    assert_eq!(app.revoke_key(second_key, &only_admin).await.status(), StatusCode::NO_CONTENT);
    let audit: Vec<Value> = app.audit(second_key, "?target_type=key").await.json().await.unwrap();
    let revocations: Vec<&Value> = audit.iter().filter(|e| e["action"] == "key.revoke").collect();
    assert_eq!(revocations.len(), 1, "one revocation, one entry: {audit:?}");
    assert_eq!(revocations[0]["actor_label"], "second admin (admin)");
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked_on_sqlite() {
    the_last_admin_key_cannot_be_revoked(Db::Sqlite).await;
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked_on_postgres() {
    the_last_admin_key_cannot_be_revoked(Db::Postgres).await;
}

/// Two admins revoking each other at the same moment: exactly one succeeds, and an admin key
/// stays active. Repeated, so that the two requests really overlap some of the time.
async fn two_admins_revoking_each_other_at_once_leave_one_admin(db: Db) {
    let app = spawn_app_on(db, |_| {}).await;
    let keys: Vec<Value> = app.list_keys(&app.admin_key).await.json().await.unwrap();
    let mut a = (app.admin_key.clone(), keys[0]["id"].as_str().unwrap().to_owned());
    for round in 0..12 {
        let created: Value = app
            .create_key(&a.0, &json!({"role": "admin", "name": format!("admin {round}")}))
            .await
            .json()
            .await
            .unwrap();
        let b = (
            created["key"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        );
        let (ab, ba) = tokio::join!(app.revoke_key(&a.0, &b.1), app.revoke_key(&b.0, &a.1));
        // The loser gets 409 (the other admin is the last now) or, when its request was
        // authenticated after the winner's commit, 401 (its own key is revoked).
        let statuses = [ab.status(), ba.status()];
        let won = statuses.iter().filter(|s| **s == StatusCode::NO_CONTENT).count();
        assert_eq!(won, 1, "round {round}: exactly one revocation succeeds: {statuses:?}");
        assert!(
            statuses.iter().all(|s| [
                StatusCode::NO_CONTENT,
                StatusCode::CONFLICT,
                StatusCode::UNAUTHORIZED
            ]
            .contains(s)),
            "round {round}: {statuses:?}"
        );
        // The survivor is still an admin and carries on.
        a = if ab.status() == StatusCode::NO_CONTENT { a } else { b };
        assert_eq!(app.list_keys(&a.0).await.status(), StatusCode::OK, "round {round}");
        let active: Vec<Value> = app.list_keys(&a.0).await.json().await.unwrap();
        let admins =
            active.iter().filter(|k| k["role"] == "admin" && k["revoked_at"].is_null()).count();
        assert_eq!(admins, 1, "round {round}");
    }
}

#[tokio::test]
async fn two_admins_revoking_each_other_at_once_leave_one_admin_on_sqlite() {
    two_admins_revoking_each_other_at_once_leave_one_admin(Db::Sqlite).await;
}

#[tokio::test]
async fn two_admins_revoking_each_other_at_once_leave_one_admin_on_postgres() {
    two_admins_revoking_each_other_at_once_leave_one_admin(Db::Postgres).await;
}
