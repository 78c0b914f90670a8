//! The console's queries (sessions, the review queue) on SQLite and PostgreSQL alike.

use crate::common::{Db, fresh};
use offside::domain::{Policy, ReferenceSource, ReferenceStatus};
use offside::store::keys::{self, Role};
use offside::store::queue::{self, QueueFilter, QueueOrder};
use offside::store::references::{self, NewReference};
use offside::store::{Store, new_id, now_ms, rights_holders, sessions};

on_both_databases!(
    sessions_are_found_until_they_expire_or_their_key_is_revoked,
    signing_out_deletes_only_that_session,
    the_queue_puts_disputed_cases_first_then_oldest_or_widest_reach,
    the_queue_filters_by_reference_holder_action_and_age,
    ten_thousand_open_cases_page_through_without_repeats_or_gaps,
);

async fn sessions_are_found_until_they_expire_or_their_key_is_revoked(db: Db) {
    let (_env, store) = fresh(db).await;
    let pool = store.pool();
    let key = keys::create(pool, "reviewer", Role::TrustSafety, None).await.expect("key");
    let session = sessions::create(pool, &key.key.id, 60_000).await.expect("session");
    assert_eq!(session.token.len(), 64);
    let found = sessions::find_active(pool, &session.token).await.expect("find").expect("active");
    assert_eq!(found.key_id, key.key.id);
    assert_eq!(found.key_name, "reviewer");
    assert_eq!(found.role, Role::TrustSafety);
    assert_eq!(found.csrf_token, session.csrf_token);
    assert_eq!(found.id, sessions::session_id(&session.token));
    sessions::touch(pool, &found.id).await.expect("touch");
    assert!(sessions::find_active(pool, "f".repeat(64).as_str()).await.expect("find").is_none());

    let expired = sessions::create(pool, &key.key.id, -1).await.expect("session");
    assert!(sessions::find_active(pool, &expired.token).await.expect("find").is_none());
    assert_eq!(sessions::delete_expired(pool, now_ms()).await.expect("sweep"), 1);

    keys::revoke(pool, &key.key.id).await.expect("revoke");
    assert!(sessions::find_active(pool, &session.token).await.expect("find").is_none());
}

async fn signing_out_deletes_only_that_session(db: Db) {
    let (_env, store) = fresh(db).await;
    let pool = store.pool();
    let holder = rights_holders::create(pool, "League").await.expect("holder");
    let key =
        keys::create(pool, "uploads", Role::RightsHolder, Some(&holder.id)).await.expect("key");
    let a = sessions::create(pool, &key.key.id, 60_000).await.expect("a");
    let b = sessions::create(pool, &key.key.id, 60_000).await.expect("b");
    assert!(sessions::delete(pool, &a.token).await.expect("delete"));
    assert!(!sessions::delete(pool, &a.token).await.expect("delete again"));
    assert!(sessions::find_active(pool, &a.token).await.expect("find").is_none());
    let b = sessions::find_active(pool, &b.token).await.expect("find").expect("b lives");
    assert_eq!(b.rights_holder_id.as_deref(), Some(holder.id.as_str()));
}

/// Inserts `n` open cases in bulk (multi-row statements), each on its own stream and match,
/// opened `created_at(i)` with `viewers(i)`; returns the case ids in insertion order.
async fn insert_cases(
    store: &Store,
    reference_id: &str,
    owner: Option<&str>,
    action: &str,
    n: usize,
    created_at: impl Fn(usize) -> i64,
    viewers: impl Fn(usize) -> Option<i64>,
) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|_| new_id()).collect();
    let mut tx = store.pool().begin().await.expect("tx");
    for chunk_start in (0..n).step_by(200) {
        let chunk = chunk_start..(chunk_start + 200).min(n);
        let values = |width: usize| {
            chunk
                .clone()
                .enumerate()
                .map(|(row, _)| {
                    let params: Vec<String> =
                        (1..=width).map(|p| format!("${}", row * width + p)).collect();
                    format!("({})", params.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "INSERT INTO streams (id, account_id, status, viewers, created_at, updated_at) VALUES {}",
            values(6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk.clone() {
            q = q
                .bind(format!("s-{}", ids[i]))
                .bind(format!("acct-{i}"))
                .bind("flagged")
                .bind(viewers(i))
                .bind(created_at(i))
                .bind(created_at(i));
        }
        q.execute(&mut *tx).await.expect("streams");
        let sql = format!(
            "INSERT INTO stream_matches (id, stream_id, reference_id, action, offset_ms, matched_ms, \
             matched_keyframes, first_match_ts_ms, decided_at_ts_ms, created_at) VALUES {}",
            values(10)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk.clone() {
            q = q
                .bind(format!("m-{}", ids[i]))
                .bind(format!("s-{}", ids[i]))
                .bind(reference_id)
                .bind(action)
                .bind(0_i64)
                .bind(4000_i64)
                .bind(3_i64)
                .bind(0_i64)
                .bind(4000_i64)
                .bind(created_at(i));
        }
        q.execute(&mut *tx).await.expect("matches");
        let sql = format!(
            "INSERT INTO cases (id, stream_id, reference_id, rights_holder_id, match_id, action, \
             status, created_at, updated_at) VALUES {}",
            values(9)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk.clone() {
            q = q
                .bind(ids[i].clone())
                .bind(format!("s-{}", ids[i]))
                .bind(reference_id)
                .bind(owner)
                .bind(format!("m-{}", ids[i]))
                .bind(action)
                .bind("open")
                .bind(created_at(i))
                .bind(created_at(i));
        }
        q.execute(&mut *tx).await.expect("cases");
    }
    tx.commit().await.expect("commit");
    ids
}

async fn reference(store: &Store, owner: Option<&str>, title: &str) -> String {
    let id = new_id();
    references::insert(
        store.pool(),
        &NewReference {
            id: &id,
            rights_holder_id: owner,
            title,
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

async fn ids_of(store: &Store, filter: &QueueFilter<'_>, order: QueueOrder) -> Vec<String> {
    queue::page(store.pool(), filter, order, None, 100)
        .await
        .expect("page")
        .into_iter()
        .map(|i| i.case_id)
        .collect()
}

async fn the_queue_puts_disputed_cases_first_then_oldest_or_widest_reach(db: Db) {
    let (_env, store) = fresh(db).await;
    let r = reference(&store, None, "Final").await;
    let now = now_ms();
    // Case i is opened i minutes ago; viewers 10, none, 30, 20.
    let viewers = [Some(10), None, Some(30), Some(20)];
    let ids =
        insert_cases(&store, &r, None, "flag", 4, |i| now - i as i64 * 60_000, |i| viewers[i])
            .await;
    let oldest = ids_of(&store, &QueueFilter::default(), QueueOrder::Oldest).await;
    assert_eq!(oldest, vec![ids[3].clone(), ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let reach = ids_of(&store, &QueueFilter::default(), QueueOrder::Reach).await;
    assert_eq!(reach, vec![ids[2].clone(), ids[3].clone(), ids[0].clone(), ids[1].clone()]);

    sqlx::query(
        "UPDATE cases SET disputed_at = $1, dispute_reason = 'my own footage' WHERE id = $2",
    )
    .bind(now)
    .bind(&ids[0])
    .execute(store.pool())
    .await
    .expect("dispute");
    let page = queue::page(store.pool(), &QueueFilter::default(), QueueOrder::Reach, None, 10)
        .await
        .expect("page");
    assert_eq!(page[0].case_id, ids[0], "disputed first");
    assert_eq!(page[0].dispute_reason.as_deref(), Some("my own footage"));
    assert_eq!(page[0].reference_title.as_deref(), Some("Final"));
    assert_eq!(page[0].matched_ms, Some(4000));
    assert_eq!(page[1].case_id, ids[2]);
    let oldest = ids_of(&store, &QueueFilter::default(), QueueOrder::Oldest).await;
    assert_eq!(oldest[0], ids[0], "disputed first whatever the order");

    sqlx::query("UPDATE cases SET status = 'confirmed' WHERE id = $1")
        .bind(&ids[2])
        .execute(store.pool())
        .await
        .expect("decide");
    assert_eq!(queue::count(store.pool(), &QueueFilter::default()).await.expect("count"), 3);
    assert!(!ids_of(&store, &QueueFilter::default(), QueueOrder::Oldest).await.contains(&ids[2]));
}

async fn the_queue_filters_by_reference_holder_action_and_age(db: Db) {
    let (_env, store) = fresh(db).await;
    let holder = rights_holders::create(store.pool(), "League").await.expect("holder");
    let mine = reference(&store, Some(&holder.id), "Ours").await;
    let other = reference(&store, None, "Platform's").await;
    let now = now_ms();
    let day = 86_400_000;
    let fresh_flags =
        insert_cases(&store, &mine, Some(&holder.id), "flag", 2, |_| now - 1000, |_| None).await;
    let old_kill =
        insert_cases(&store, &mine, Some(&holder.id), "kill", 1, |_| now - 10 * day, |_| None)
            .await;
    let others = insert_cases(&store, &other, None, "flag", 2, |_| now - 2 * day, |_| None).await;

    let by_reference = QueueFilter { reference_id: Some(&other), ..QueueFilter::default() };
    let mut got = ids_of(&store, &by_reference, QueueOrder::Oldest).await;
    got.sort();
    let mut want = others.clone();
    want.sort();
    assert_eq!(got, want);

    let by_holder = QueueFilter { rights_holder_id: Some(&holder.id), ..QueueFilter::default() };
    assert_eq!(ids_of(&store, &by_holder, QueueOrder::Oldest).await.len(), 3);
    let kills = QueueFilter { action: Some("kill"), ..QueueFilter::default() };
    assert_eq!(ids_of(&store, &kills, QueueOrder::Oldest).await, old_kill);
    let within_day = QueueFilter { opened_from: Some(now - day), ..QueueFilter::default() };
    let mut got = ids_of(&store, &within_day, QueueOrder::Oldest).await;
    got.sort();
    let mut want = fresh_flags.clone();
    want.sort();
    assert_eq!(got, want);
    let older = QueueFilter { opened_before: Some(now - 7 * day), ..QueueFilter::default() };
    assert_eq!(ids_of(&store, &older, QueueOrder::Oldest).await, old_kill);
    assert_eq!(queue::count(store.pool(), &older).await.expect("count"), 1);
}

async fn ten_thousand_open_cases_page_through_without_repeats_or_gaps(db: Db) {
    let (_env, store) = fresh(db).await;
    let r = reference(&store, None, "Final").await;
    let now = now_ms();
    let n = 10_000;
    // Many ties on both keys (the same second, the same viewer counts) so the id breaks them.
    let ids = insert_cases(
        &store,
        &r,
        None,
        "flag",
        n,
        |i| now - (i / 7) as i64 * 1000,
        |i| (i % 5 != 0).then_some((i % 13) as i64),
    )
    .await;
    assert_eq!(queue::count(store.pool(), &QueueFilter::default()).await.expect("count"), n as i64);
    for order in [QueueOrder::Oldest, QueueOrder::Reach] {
        let mut seen = Vec::with_capacity(n);
        let mut after = None;
        loop {
            let page =
                queue::page(store.pool(), &QueueFilter::default(), order, after.as_ref(), 500)
                    .await
                    .expect("page");
            let Some(last) = page.last() else { break };
            // The cursor travels through a URL.
            after = queue::QueueCursor::decode(&last.cursor.encode());
            assert!(after.is_some());
            seen.extend(page.iter().map(|i| (i.cursor.key, i.case_id.clone())));
        }
        assert_eq!(seen.len(), n, "{order:?}: every case once");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{order:?}: in key order, no repeats");
        let mut all: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
        all.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(all, want);
    }
}
