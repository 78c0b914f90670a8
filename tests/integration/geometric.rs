//! The geometric tier inside the service's recognition: a re-stream PDQ cannot see (shrunk,
//! padded, tilted, with a box over a corner) is flagged only because local features verify,
//! and the hard negative (the same room in another take) stays unflagged with both tiers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};

use crate::common::{Db, TestEnv};

use fingerprints::features::{FeatureConfig, LocalFeatures};
use fingerprints::{CropVariant, DecodeLimits, decode_luma};
use offside::domain::{Policy, ReferenceSource, ReferenceStatus};
use offside::eval::{self, Query, QueryKind};
use offside::pipeline::{self, Deps, Outcome};
use offside::queue::{KeyframeMessage, QueueMessage};
use offside::recognition::{
    FeatureFrame, FeatureSchedule, Library, RecognitionConfig, ReferenceHashOptions,
    ReferenceHashes, SharedLibrary, Tiers, hash_keyframe, hash_reference_file, reference_frames_of,
};
use offside::references::index::IndexSync;
use offside::store::references::{self, FEATURE_FRAMES_PER_CHUNK, NewReference};
use offside::store::{Store, new_id};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Keyframes every 2 s of `ref_earth.mp4` from 8 s on, as a phone filming a screen or a
/// streamer's layout would show it: the picture shrunk to 90 % inside a grey surround,
/// tilted by 2 degrees, with a solid box (a face-cam) over the lower right corner.
fn camcorder_keyframes(dir: &Path) -> Vec<(i64, PathBuf)> {
    let input = root().join("tests/fixtures/eval-mini/refs/ref_earth.mp4");
    let filter = "fps=0.5,scale=iw*0.9:ih*0.9,pad=iw/0.9:ih/0.9:(ow-iw)/2:(oh-ih)/2:color=0x404040,\
                  rotate=2*PI/180:fillcolor=0x404040,\
                  drawbox=x=iw*0.64:y=ih*0.58:w=iw*0.34:h=ih*0.4:color=0xc08040:t=fill";
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-ss", "8", "-i"])
        .arg(&input)
        .args(["-vf", filter, "-frames:v", "8", "-q:v", "3"])
        .arg(dir.join("%02d.jpg"))
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed");
    (1..=8)
        .map(|n| ((n - 1) * 2000, dir.join(format!("{n:02}.jpg"))))
        .inspect(|(_, p)| assert!(p.exists(), "{} missing", p.display()))
        .collect()
}

fn earth_library() -> Library {
    let refs = vec![
        root().join("tests/fixtures/eval-mini/refs/ref_earth.mp4"),
        root().join("tests/fixtures/eval-mini/refs/ref_screencast.mp4"),
    ];
    eval::build_library(&refs, &ReferenceHashOptions::default(), 2, None, &|_, _| {}).unwrap().0
}

fn run(library: &Library, query: &Query, tiers: Tiers) -> eval::QueryOutcome {
    let cfg = RecognitionConfig { tiers, ..RecognitionConfig::default() };
    eval::run_query(library, &cfg, query).unwrap()
}

#[test]
fn a_shrunk_tilted_overlaid_restream_is_flagged_only_thanks_to_the_geometric_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let query = Query {
        name: "earth__camcorder_like".to_owned(),
        kind: QueryKind::Positive,
        transform: "camcorder_like".to_owned(),
        reference: Some("ref_earth.mp4".to_owned()),
        source_role: "reference".to_owned(),
        keyframes: camcorder_keyframes(tmp.path()),
    };
    let library = earth_library();
    assert!(library.stats().feature_frames >= 30, "{:?}", library.stats());

    let pdq = run(&library, &query, Tiers::Pdq);
    assert_eq!(pdq.flagged_as, None, "the PDQ tier alone flagged it: {pdq:?}");
    let features = run(&library, &query, Tiers::Features);
    assert!(features.detected(), "the geometric tier alone missed it: {features:?}");
    let both = run(&library, &query, Tiers::Both);
    assert!(both.detected(), "both tiers together missed it: {both:?}");
    assert!(both.ttd_s.unwrap() <= 8.0, "detected only after {:?} s", both.ttd_s);
    // The same lookups give the same per-tier answers in one run.
    assert_eq!(both.by_tier["pdq"].flagged_as, None);
    assert_eq!(both.by_tier["features"].flagged_as.as_deref(), Some("ref_earth.mp4"));
}

/// The first 30 s of `ref_webcam_take1` at one frame per second (the fixtures of the feature
/// tests), indexed as the reference side would: PDQ frames with crops, and features.
fn webcam_take1_library() -> Library {
    let dir = root().join("fingerprints/tests/data/features");
    let opts = ReferenceHashOptions::default();
    let mut frames = Vec::new();
    let mut features = Vec::new();
    for t in 0..30i64 {
        let bytes = std::fs::read(dir.join(format!("webcam_take1_{t:02}s.jpg"))).unwrap();
        let limits = DecodeLimits { min_long_side: u32::MAX, ..DecodeLimits::default() };
        let luma = decode_luma(&bytes, &limits).unwrap();
        frames.extend(reference_frames_of(&luma, t * 1000, &opts.variants, opts.min_quality));
        features.push(FeatureFrame {
            ts_ms: t * 1000,
            features: LocalFeatures::extract(&luma, &FeatureConfig::reference()),
        });
    }
    assert!(frames.iter().any(|f| f.variant == CropVariant::Full));
    let mut library = Library::new();
    library.insert_reference("ref_webcam_take1.mp4", &frames, &features).unwrap();
    library
}

#[test]
fn the_same_room_in_another_take_is_never_flagged_with_both_tiers() {
    let library = webcam_take1_library();
    let dir = root().join("tests/fixtures/eval-mini");
    let query = eval::load_queries(&dir)
        .unwrap()
        .into_iter()
        .find(|q| q.is_hard_negative())
        .expect("eval-mini has its hard negative");
    let outcome = run(&library, &query, Tiers::Both);
    for (tiers, o) in &outcome.by_tier {
        assert_eq!(o.flagged_as, None, "{tiers} flagged the hard negative: {outcome:?}");
    }
}

/// A fresh migrated database holding one reference with `status` and no frames yet, and the
/// hashes of the Earth clip to give it.
async fn earth_reference(
    db: Db,
    status: ReferenceStatus,
) -> (TestEnv, Store, String, ReferenceHashes) {
    let env = TestEnv::new(db).await;
    let store = Store::connect(&env.database_url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let id = new_id();
    references::insert(
        store.pool(),
        &NewReference {
            id: &id,
            rights_holder_id: None,
            title: "Earth",
            source: ReferenceSource::Video,
            status,
            policy: &Policy::default(),
            upload_path: None,
        },
    )
    .await
    .expect("insert reference");
    let input = root().join("tests/fixtures/eval-mini/refs/ref_earth.mp4");
    let hashes = hash_reference_file(&input, &ReferenceHashOptions::default(), |_| {}).unwrap();
    (env, store, id, hashes)
}

/// A reference's feature frames go through the database and come back identical (positions to
/// a quarter pixel, which the encoding keeps exactly for these), across several chunks; the
/// index sync loads them with the frames; clearing and deleting the reference removes them.
async fn feature_frames_round_trip_through_the_database_into_the_index(db: Db) {
    let (_env, store, id, hashes) = earth_reference(db, ReferenceStatus::Ready).await;
    assert!(hashes.features.len() >= 30, "{} feature frames", hashes.features.len());
    // Repeat the frames past one chunk so chunk order matters.
    let many: Vec<FeatureFrame> = (0..FEATURE_FRAMES_PER_CHUNK / hashes.features.len() + 2)
        .flat_map(|round| {
            hashes.features.iter().map(move |f| FeatureFrame {
                ts_ms: f.ts_ms + round as i64 * 60_000,
                features: f.features.clone(),
            })
        })
        .collect();
    assert!(many.len() > FEATURE_FRAMES_PER_CHUNK);
    let quantised: Vec<FeatureFrame> = many
        .iter()
        .map(|f| {
            let k = f
                .features
                .keypoints()
                .iter()
                .map(|k| fingerprints::features::Keypoint {
                    x: (k.x * 4.0).round() / 4.0,
                    y: (k.y * 4.0).round() / 4.0,
                    ..*k
                })
                .collect();
            FeatureFrame {
                ts_ms: f.ts_ms,
                features: LocalFeatures::from_parts(
                    f.features.width(),
                    f.features.height(),
                    k,
                    f.features.descriptors().to_vec(),
                ),
            }
        })
        .collect();
    let mut tx = store.pool().begin().await.expect("begin");
    references::append_features(&mut tx, &id, &many).await.expect("append features");
    references::append_frames(&mut tx, &id, &hashes.frames).await.expect("append frames");
    tx.commit().await.expect("commit");
    assert_eq!(references::load_features(store.pool(), &id).await.expect("load"), quantised);

    let library = Arc::new(RwLock::new(Library::new()));
    let sync = IndexSync::new(library.clone());
    sync.reconcile(&store).await.expect("reconcile");
    let stats = library.read().unwrap().stats();
    assert_eq!((stats.references, stats.feature_frames), (1, many.len()));

    let mut conn = store.pool().acquire().await.expect("conn");
    references::clear_frames(&mut conn, &id).await.expect("clear");
    assert!(references::load_features(store.pool(), &id).await.expect("load").is_empty());
    references::append_features(&mut conn, &id, &many[..3]).await.expect("append");
    drop(conn);
    assert!(references::delete(store.pool(), &id).await.expect("delete"));
    assert!(references::load_features(store.pool(), &id).await.expect("load").is_empty());
}

#[tokio::test]
async fn feature_frames_round_trip_through_sqlite_into_the_index() {
    feature_frames_round_trip_through_the_database_into_the_index(Db::Sqlite).await;
}

#[tokio::test]
async fn feature_frames_round_trip_through_postgres_into_the_index() {
    feature_frames_round_trip_through_the_database_into_the_index(Db::Postgres).await;
}

/// A reconcile that reads the database while a job of this process commits a reference must
/// not drop the reference the job has just added to the index: nothing would match it until
/// the next reconcile, although its API already says `ready` (keyframes posted at once went
/// unmatched, and a test waiting for their flag timed out now and then). The job holds
/// `IndexSync::exclusive` from before it marks the reference ready until the commit.
#[tokio::test]
async fn a_reconcile_never_drops_a_reference_its_job_is_committing() {
    let (_env, store, id, hashes) = earth_reference(Db::Sqlite, ReferenceStatus::Processing).await;
    let sync = Arc::new(IndexSync::new(Arc::new(RwLock::new(Library::new()))));

    // The job's side, as `references::jobs` does it: frames stored and the reference marked
    // ready in one transaction, added to the index before the commit.
    let job = sync.exclusive().await;
    let mut tx = store.pool().begin().await.expect("begin");
    references::append_frames(&mut tx, &id, &hashes.frames).await.expect("append frames");
    assert!(references::mark_ready(&mut *tx, &id).await.expect("mark ready"));
    sync.add(&id, &hashes.frames, &hashes.features);
    // The periodic reconcile comes round meanwhile; left to run, it would read the list of
    // matchable references before the commit.
    let reconcile = tokio::spawn({
        let (sync, store) = (Arc::clone(&sync), store.clone());
        async move { sync.reconcile(&store).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.expect("commit");
    drop(job);
    reconcile.await.expect("reconcile task").expect("reconcile");
    assert!(sync.contains(&id), "the reference stays matchable");
}

/// The geometric tier's schedule in the worker (`recognition::FeatureSchedule`): a stream's
/// opening is looked at in full, a stream that has shown nothing since is looked at once per
/// interval, and a hit recorded by another worker process opens the full look for the next
/// keyframe here. Two `Deps` on one database are two worker processes.
async fn a_hit_seen_by_another_worker_opens_the_geometric_look_here(db: Db) {
    let env = TestEnv::new(db).await;
    let store = Store::connect(&env.database_url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let library = earth_library();
    let tmp = tempfile::tempdir().unwrap();
    let keyframes = camcorder_keyframes(tmp.path());
    // Keyframes only the geometric tier sees: no PDQ hit, a verified feature frame.
    let cfg = RecognitionConfig { schedule: FeatureSchedule::BY_NEED, ..Default::default() };
    let geometric_only: Vec<bytes::Bytes> = keyframes
        .iter()
        .map(|(_, path)| bytes::Bytes::from(std::fs::read(path).unwrap()))
        .filter(|bytes| {
            let hashes = hash_keyframe(bytes).unwrap();
            library.lookup_pdq(&hashes, cfg.radius, cfg.max_hits_per_keyframe, None).is_empty()
                && !library.lookup_features(&hashes, None).is_empty()
        })
        .collect();
    assert!(geometric_only.len() >= 2, "{} geometric-only keyframes", geometric_only.len());
    let unrelated = bytes::Bytes::from(
        std::fs::read(root().join("fingerprints/tests/data/pdq/camera_640x360.png")).unwrap(),
    );

    let library: SharedLibrary = Arc::new(RwLock::new(library));
    let worker_a = Deps::new(store.clone(), library.clone(), cfg.clone());
    let worker_b = Deps::new(store.clone(), library, cfg.clone());
    let keyframe = |stream: &str, ts_ms: i64, body: &bytes::Bytes| {
        QueueMessage::Keyframe(KeyframeMessage {
            stream_id: stream.to_owned(),
            ts_ms,
            account_id: None,
            captured_at_ms: None,
            viewers: None,
            content_type: "image/jpeg".to_owned(),
            body: body.clone(),
        })
    };
    let unrelated_png = |stream: &str, ts| {
        let mut m = keyframe(stream, ts, &unrelated);
        if let QueueMessage::Keyframe(k) = &mut m {
            k.content_type = "image/png".to_owned();
        }
        m
    };
    let outcome = |deps: Deps, message: QueueMessage| async move {
        pipeline::handle(&message, &deps).await.expect("handled").outcome
    };
    let (opening, interval) = (cfg.schedule.evidence_window_ms, cfg.schedule.quiet_interval_ms);

    // A stream's opening is looked at in full: a re-stream there is found on any keyframe.
    let new = "stream-new";
    assert_eq!(outcome(worker_b.clone(), unrelated_png(new, 0)).await, Outcome::NoMatch);
    let seen = outcome(worker_b.clone(), keyframe(new, interval / 2, &geometric_only[1])).await;
    assert!(matches!(seen, Outcome::Accumulating | Outcome::Decided(_)), "{seen:?}");

    // Past its opening, worker B looks at a quiet stream's keyframe when the interval is due,
    // then skips the next ones until it is due again: a re-stream starting half an interval
    // later is not looked at.
    let due = opening + interval;
    let (found_at, skipped_at) = (due + interval / 4, due + interval / 2);
    let quiet = "stream-quiet";
    assert_eq!(outcome(worker_b.clone(), unrelated_png(quiet, 0)).await, Outcome::NoMatch);
    assert_eq!(outcome(worker_b.clone(), unrelated_png(quiet, due)).await, Outcome::NoMatch);
    let skipped = outcome(worker_b.clone(), keyframe(quiet, skipped_at, &geometric_only[1])).await;
    assert_eq!(skipped, Outcome::NoMatch);

    // Worker A finds the re-stream on another stream's keyframe; worker B, which saw only that
    // stream's quiet keyframes, reads the hit with the stream's status and looks at the next
    // keyframe.
    let shared = "stream-shared";
    assert_eq!(outcome(worker_b.clone(), unrelated_png(shared, 0)).await, Outcome::NoMatch);
    assert_eq!(outcome(worker_b.clone(), unrelated_png(shared, due)).await, Outcome::NoMatch);
    let found = outcome(worker_a, keyframe(shared, found_at, &geometric_only[0])).await;
    assert_eq!(found, Outcome::Accumulating);
    // Past the status cache's second, as a keyframe of a stream keyed every 2 s would be.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let looked = outcome(worker_b, keyframe(shared, skipped_at, &geometric_only[1])).await;
    assert!(matches!(looked, Outcome::Accumulating | Outcome::Decided(_)), "{looked:?}");
}

#[tokio::test]
async fn a_hit_seen_by_another_worker_opens_the_geometric_look_here_sqlite() {
    a_hit_seen_by_another_worker_opens_the_geometric_look_here(Db::Sqlite).await;
}

#[tokio::test]
async fn a_hit_seen_by_another_worker_opens_the_geometric_look_here_postgres() {
    a_hit_seen_by_another_worker_opens_the_geometric_look_here(Db::Postgres).await;
}
