//! One store test suite, run against SQLite (a temp file) and PostgreSQL (a fresh database per
//! test): both databases must behave identically for every query the service uses.

use crate::common::{Db, fresh};
use fingerprints::Hash256;
use offside::domain::{Policy, PolicyAction, ReferenceSource, ReferenceStatus};
use offside::recognition::ReferenceFrame;
use offside::store::keys::{self, Role};
use offside::store::references::{self, NewReference};
use offside::store::{Store, is_unique_violation, new_id, rights_holders};

fn frame(i: u32) -> ReferenceFrame {
    let mut hash = Hash256::default();
    for bit in 0..256 {
        if (bit * 7 + i as usize).is_multiple_of(3) {
            hash.set_bit(bit);
        }
    }
    let variant = fingerprints::CropVariant::ALL[i as usize % 4];
    ReferenceFrame { ts_ms: i64::from(i) * 40, hash, quality: (i % 101) as u8, variant }
}

async fn new_reference(store: &Store, owner: Option<&str>, status: ReferenceStatus) -> String {
    let id = new_id();
    references::insert(
        store.pool(),
        &NewReference {
            id: &id,
            rights_holder_id: owner,
            title: "Final",
            source: ReferenceSource::Video,
            status,
            policy: &Policy::default(),
            upload_path: Some("/tmp/upload"),
        },
    )
    .await
    .expect("insert reference");
    id
}

on_both_databases!(
    migrations_are_idempotent,
    rights_holder_names_are_unique,
    keys_are_found_by_secret_until_revoked,
    rights_holder_keys_require_an_existing_rights_holder,
    frames_round_trip_through_chunks_in_order,
    listing_pages_by_owner_and_cursor,
    job_state_moves_from_processing_to_ready_or_failed,
    deleting_a_reference_deletes_its_frames,
    policy_updates_are_stored,
);

async fn migrations_are_idempotent(db: Db) {
    let (_env, store) = fresh(db).await;
    store.migrate().await.expect("second migrate is a no-op");
    store.ping().await.expect("ping");
}

async fn rights_holder_names_are_unique(db: Db) {
    let (_env, store) = fresh(db).await;
    let first = rights_holders::create(store.pool(), "Premier League").await.expect("create");
    let err = rights_holders::create(store.pool(), "Premier League").await.expect_err("duplicate");
    assert!(is_unique_violation(&err), "{err:?}");
    let found = rights_holders::get(store.pool(), &first.id).await.expect("get").expect("exists");
    assert_eq!(found, first);
    assert_eq!(rights_holders::list(store.pool()).await.expect("list"), vec![first]);
}

async fn keys_are_found_by_secret_until_revoked(db: Db) {
    let (_env, store) = fresh(db).await;
    let created = keys::create(store.pool(), "ops", Role::TrustSafety, None).await.expect("create");
    assert!(created.secret.starts_with("off_"));
    let found = keys::find_active_by_secret(store.pool(), &created.secret)
        .await
        .expect("find")
        .expect("active");
    assert_eq!(found.role, Role::TrustSafety);
    assert!(keys::find_active_by_secret(store.pool(), "off_wrong").await.expect("find").is_none());
    assert!(keys::revoke(store.pool(), &created.key.id).await.expect("revoke"));
    assert!(
        keys::find_active_by_secret(store.pool(), &created.secret).await.expect("find").is_none()
    );
    assert!(!keys::revoke(store.pool(), "no-such-key").await.expect("revoke"));
    let listed = keys::list(store.pool()).await.expect("list");
    assert!(listed[0].revoked_at.is_some());
}

async fn rights_holder_keys_require_an_existing_rights_holder(db: Db) {
    let (_env, store) = fresh(db).await;
    assert!(keys::create(store.pool(), "x", Role::RightsHolder, Some("missing")).await.is_err());
    assert!(
        keys::create(store.pool(), "x", Role::RightsHolder, None).await.is_err(),
        "scope check"
    );
    let holder = rights_holders::create(store.pool(), "UEFA").await.expect("holder");
    let key = keys::create(store.pool(), "x", Role::RightsHolder, Some(&holder.id))
        .await
        .expect("scoped key");
    assert_eq!(key.key.rights_holder_id.as_deref(), Some(holder.id.as_str()));
}

async fn frames_round_trip_through_chunks_in_order(db: Db) {
    let (_env, store) = fresh(db).await;
    let id = new_reference(&store, None, ReferenceStatus::Ready).await;
    // More than one chunk, then an append.
    let first: Vec<ReferenceFrame> = (0..5000).map(frame).collect();
    let second: Vec<ReferenceFrame> = (5000..5010).map(frame).collect();
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(references::append_frames(&mut conn, &id, &first).await.expect("append"), 5000);
    assert_eq!(references::append_frames(&mut conn, &id, &second).await.expect("append"), 5010);
    drop(conn);
    let loaded = references::load_frames(store.pool(), &id).await.expect("load");
    assert_eq!(loaded, first.iter().chain(&second).copied().collect::<Vec<_>>());
    let indexable = references::list_indexable(store.pool()).await.expect("indexable");
    assert_eq!(indexable, vec![(id.clone(), 5010)]);
}

async fn listing_pages_by_owner_and_cursor(db: Db) {
    let (_env, store) = fresh(db).await;
    let a = rights_holders::create(store.pool(), "A").await.expect("a");
    let b = rights_holders::create(store.pool(), "B").await.expect("b");
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(new_reference(&store, Some(&a.id), ReferenceStatus::Ready).await);
        new_reference(&store, Some(&b.id), ReferenceStatus::Ready).await;
    }
    let page1 = references::list(store.pool(), Some(&a.id), None, 3).await.expect("page 1");
    let page2 =
        references::list(store.pool(), Some(&a.id), Some(&page1[2].id), 3).await.expect("page 2");
    let ids: Vec<String> = page1.iter().chain(&page2).map(|r| r.id.clone()).collect();
    assert_eq!(ids, mine);
    assert_eq!(references::list(store.pool(), None, None, 100).await.expect("all").len(), 10);
}

async fn job_state_moves_from_processing_to_ready_or_failed(db: Db) {
    let (_env, store) = fresh(db).await;
    let ok = new_reference(&store, None, ReferenceStatus::Processing).await;
    let bad = new_reference(&store, None, ReferenceStatus::Processing).await;
    let pending: Vec<String> = references::list_processing(store.pool())
        .await
        .expect("pending")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, vec![ok.clone(), bad.clone()]);

    references::update_progress(store.pool(), &ok, 420, 17).await.expect("progress");
    let running = references::get(store.pool(), &ok).await.expect("get").expect("exists");
    assert_eq!((running.progress_permille, running.frames), (Some(420), 17));

    let mut tx = store.pool().begin().await.expect("tx");
    references::clear_frames(&mut tx, &ok).await.expect("clear");
    references::append_frames(&mut tx, &ok, &[frame(1), frame(2)]).await.expect("append");
    assert!(references::mark_ready(&mut *tx, &ok).await.expect("ready"));
    tx.commit().await.expect("commit");
    assert!(references::mark_failed(store.pool(), &bad, "corrupt file").await.expect("failed"));

    let ready = references::get(store.pool(), &ok).await.expect("get").expect("exists");
    assert_eq!(
        (ready.status, ready.frames, ready.progress_permille, ready.upload_path),
        (ReferenceStatus::Ready, 2, None, None)
    );
    let failed = references::get(store.pool(), &bad).await.expect("get").expect("exists");
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (ReferenceStatus::Failed, Some("corrupt file"))
    );
    assert!(references::list_processing(store.pool()).await.expect("pending").is_empty());
}

async fn deleting_a_reference_deletes_its_frames(db: Db) {
    let (_env, store) = fresh(db).await;
    let id = new_reference(&store, None, ReferenceStatus::Ready).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    references::append_frames(&mut conn, &id, &[frame(1)]).await.expect("append");
    drop(conn);
    assert!(references::delete(store.pool(), &id).await.expect("delete"));
    assert!(!references::delete(store.pool(), &id).await.expect("delete again"));
    assert!(references::load_frames(store.pool(), &id).await.expect("load").is_empty());
    assert!(references::list_indexable(store.pool()).await.expect("indexable").is_empty());
}

async fn policy_updates_are_stored(db: Db) {
    let (_env, store) = fresh(db).await;
    let id = new_reference(&store, None, ReferenceStatus::Ready).await;
    let policy = Policy {
        action: PolicyAction::Kill,
        min_match_seconds: 12.5,
        allow_accounts: vec!["official".to_owned()],
        ..Policy::default()
    };
    assert!(references::update_policy(store.pool(), &id, &policy).await.expect("update"));
    assert_eq!(
        references::get(store.pool(), &id).await.expect("get").expect("exists").policy,
        policy
    );
    assert!(!references::update_policy(store.pool(), "missing", &policy).await.expect("update"));
}
