//! The ingest lease of a live feed, on SQLite and PostgreSQL: exactly one process holds it,
//! and another takes it over once the holder stops renewing.

use crate::common::{Db, TestEnv};
use offside::domain::{FeedStatus, Policy, ReferenceSource, ReferenceStatus};
use offside::live::store::{self as feeds, Heartbeat, NewFeed};
use offside::store::Store;
use offside::store::references::{self, NewReference};

const TTL: i64 = 10_000;

async fn store_with_feed(db: Db) -> (TestEnv, Store) {
    let env = TestEnv::new(db).await;
    let store = Store::connect(&env.database_url).await.expect("database");
    store.migrate().await.expect("migrations");
    let policy = Policy::default();
    references::insert(
        store.pool(),
        &NewReference {
            id: "feed-1",
            rights_holder_id: None,
            title: "final",
            source: ReferenceSource::Video,
            status: ReferenceStatus::Live,
            policy: &policy,
            upload_path: None,
        },
    )
    .await
    .expect("reference");
    feeds::insert(
        store.pool(),
        &NewFeed {
            reference_id: "feed-1",
            url: "udp://127.0.0.1:5000",
            origin_ms: 1_000,
            starts_at: None,
            ends_at: None,
            retention_ms: 7_200_000,
            archive: false,
        },
    )
    .await
    .expect("feed");
    (env, store)
}

async fn one_holder_at_a_time_and_takeover_after_expiry(db: Db) {
    let (_env, store) = store_with_feed(db).await;
    let pool = store.pool();
    let now = 1_000_000;
    assert!(feeds::claim(pool, "feed-1", "a", now, TTL).await.unwrap());
    assert!(!feeds::claim(pool, "feed-1", "b", now + 1, TTL).await.unwrap(), "b must wait");
    // a renews with its counters; b still cannot take it.
    let beat = Heartbeat {
        status: Some(FeedStatus::Live),
        frames_added: 25,
        last_frame_at: Some(now + 5_000),
        ..Heartbeat::default()
    };
    assert!(feeds::heartbeat(pool, "feed-1", "a", now + 5_000, TTL, &beat).await.unwrap());
    assert!(!feeds::claim(pool, "feed-1", "b", now + 14_000, TTL).await.unwrap());
    // a dies: once its lease has run out, b takes over and a learns it lost the feed.
    assert!(feeds::claim(pool, "feed-1", "b", now + 15_001, TTL).await.unwrap());
    assert!(
        !feeds::heartbeat(pool, "feed-1", "a", now + 15_002, TTL, &Heartbeat::default())
            .await
            .unwrap()
    );
    let reconnect = Heartbeat {
        status: Some(FeedStatus::Reconnecting),
        reconnects_added: 1,
        error: Some("connection refused".to_owned()),
        ..Heartbeat::default()
    };
    assert!(feeds::heartbeat(pool, "feed-1", "b", now + 16_000, TTL, &reconnect).await.unwrap());
    let feed = feeds::get(pool, "feed-1").await.unwrap().unwrap();
    assert_eq!(feed.lease_holder.as_deref(), Some("b"));
    assert_eq!((feed.status, feed.frames, feed.reconnects), (FeedStatus::Reconnecting, 25, 1));
    assert_eq!(feed.last_frame_at, Some(now + 5_000));
    assert_eq!(feed.last_error.as_deref(), Some("connection refused"));
    // An ended feed is nobody's.
    assert!(feeds::end(pool, "feed-1", now + 17_000).await.unwrap());
    assert!(!feeds::claim(pool, "feed-1", "c", now + 60_000, TTL).await.unwrap());
    assert!(
        !feeds::heartbeat(pool, "feed-1", "b", now + 17_001, TTL, &Heartbeat::default())
            .await
            .unwrap()
    );
    // Deleting the reference deletes its feed.
    assert!(references::delete(pool, "feed-1").await.unwrap());
    assert!(feeds::get(pool, "feed-1").await.unwrap().is_none());
}

#[tokio::test]
async fn a_feed_lease_has_one_holder_and_passes_on_when_it_expires_sqlite() {
    one_holder_at_a_time_and_takeover_after_expiry(Db::Sqlite).await;
}

#[tokio::test]
async fn a_feed_lease_has_one_holder_and_passes_on_when_it_expires_postgres() {
    one_holder_at_a_time_and_takeover_after_expiry(Db::Postgres).await;
}
