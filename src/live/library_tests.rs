//! The geometric tier of live feeds in the [`Library`], on `ref_earth.mp4` of the mini
//! evaluation set: its 30 s as a feed (features of one frame a second, as the ingest samples
//! them) and, as the pirate's keyframe, its frame at 12.5 s zoomed by 8 % and cropped back to
//! the frame.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::OnceLock;

use fingerprints::Luma;
use fingerprints::features::{FeatureConfig, LocalFeatures};

use fingerprints::{CropVariant, Hash256, Hit};

use crate::live::fanout::{CONTENT_TYPE_V2, decode_body, encode_body};
use crate::media::{LumaOptions, decode_luma_frames};
use crate::recognition::{
    FEATURE_HITS_PER_REFERENCE, FeatureFrame, FeatureSampler, HitTier, KeyframeHashes, Library,
    LiveQuery, LiveWindow, RecognitionConfig, ReferenceFrame, Tiers, hash_luma,
};

const ORIGIN: i64 = 1_700_000_000_000;
const HOURS: i64 = 3_600_000;
/// Clip position of the pirate's keyframe.
const KEYFRAME_AT: i64 = 12_500;

/// The clip's sampled feature frames (clip times) and the pirate's keyframe.
fn clip() -> &'static (Vec<FeatureFrame>, KeyframeHashes) {
    static CLIP: OnceLock<(Vec<FeatureFrame>, KeyframeHashes)> = OnceLock::new();
    CLIP.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/eval-mini/refs/ref_earth.mp4");
        let mut sampler = FeatureSampler::new(1000);
        let mut frames = Vec::new();
        let mut keyframe = None;
        decode_luma_frames(path.to_str().unwrap(), &LumaOptions::default(), |frame| {
            if sampler.sample(frame.ts_ms) {
                let features = LocalFeatures::extract(&frame.luma, &FeatureConfig::reference());
                frames.push(FeatureFrame { ts_ms: frame.ts_ms, features });
            }
            if keyframe.is_none() && frame.ts_ms >= KEYFRAME_AT {
                keyframe = Some(hash_luma(&zoomed(&frame.luma)));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        (frames, keyframe.unwrap())
    })
}

/// The centre 92 % of the picture: zoomed in by 8 % and cropped back to the frame.
fn zoomed(luma: &Luma) -> Luma {
    let (w, h) = (luma.width() * 92 / 100, luma.height() * 92 / 100);
    luma.crop((luma.width() - w) / 2, (luma.height() - h) / 2, w, h).unwrap()
}

/// The clip's feature frames aired from `aired_from` (ms after the origin) on.
fn aired(aired_from: i64) -> Vec<FeatureFrame> {
    clip()
        .0
        .iter()
        .map(|f| FeatureFrame { ts_ms: ORIGIN + aired_from + f.ts_ms, ..f.clone() })
        .collect()
}

/// The feature hits of the keyframe captured `at` ms after the origin.
fn hits(live: &Library, at: i64) -> Vec<(String, Hit)> {
    features_at(live, ORIGIN + at, LiveWindow::default())
}

/// The feature hits, with their feed's id, of the keyframe captured at `at_ms` (Unix ms).
fn features_at(live: &Library, at_ms: i64, window: LiveWindow) -> Vec<(String, Hit)> {
    let hits = live.lookup_features(&clip().1, Some(LiveQuery { at_ms, window }));
    with_ids(live, hits)
}

fn with_ids(live: &Library, hits: Vec<Hit>) -> Vec<(String, Hit)> {
    hits.into_iter().map(|h| (live.reference_id(h.reference).unwrap().to_owned(), h)).collect()
}

fn h(bits: &[usize]) -> Hash256 {
    let mut x = Hash256::default();
    for &b in bits {
        x.set_bit(b);
    }
    x
}

fn frame(ts_ms: i64, hash: Hash256) -> ReferenceFrame {
    ReferenceFrame { ts_ms, hash, quality: 90, variant: CropVariant::Full }
}

/// Whether `hits` are on feed `feed` and place the keyframe at its position in the clip
/// aired from `aired_from`, give or take a second.
fn at_its_moment(hits: &[(String, Hit)], feed: &str, aired_from: i64) -> bool {
    let moment = aired_from + KEYFRAME_AT - 1000..=aired_from + KEYFRAME_AT + 1000;
    !hits.is_empty() && hits.iter().all(|(id, h)| id == feed && moment.contains(&h.reference_ts_ms))
}

#[test]
fn a_keyframes_features_verify_only_feed_frames_aired_in_its_window() {
    let mut live = Library::new();
    live.insert_live("feed", ORIGIN, 2 * HOURS, &[], &aired(60_000));
    assert!(live.live_feature_frames() >= 29, "{}", live.live_feature_frames());
    // Captured ten seconds after its moment aired: verified, on the event timeline, at
    // most the per-reference cap, weighed as the only feed that verified.
    let captured = 60_000 + KEYFRAME_AT + 10_000;
    let found = hits(&live, captured);
    assert!(at_its_moment(&found, "feed", 60_000), "{found:?}");
    assert!(found.len() <= FEATURE_HITS_PER_REFERENCE, "{found:?}");
    assert!(found.iter().all(|(_, h)| h.distance <= 24 && (h.weight - 1.0).abs() < 1e-6));
    // Three minutes after it aired (beyond the two-minute delay and the slack): nothing.
    assert_eq!(hits(&live, captured + 180_000), []);
    // Before the clip aired: nothing to verify yet.
    assert_eq!(hits(&live, 50_000), []);
    // Through the tiers: both give the feature hits (the feed has no PDQ frames here), the
    // PDQ tier alone gives nothing.
    let lookup = |tiers| {
        let config = RecognitionConfig { tiers, ..RecognitionConfig::default() };
        let query = LiveQuery::at(ORIGIN + captured);
        let hits = live.lookup(&clip().1, &config, Some(query)).select_tiered(tiers);
        let id = |h: &Hit| live.reference_id(h.reference).unwrap().to_owned();
        hits.into_iter().map(|(h, tier)| (id(&h), h, tier)).collect::<Vec<_>>()
    };
    let tagged: Vec<_> = found.iter().map(|(id, h)| (id.clone(), *h, HitTier::Features)).collect();
    assert_eq!(lookup(Tiers::Both), tagged);
    assert_eq!(lookup(Tiers::Features), tagged);
    assert_eq!(lookup(Tiers::Pdq), []);
}

#[test]
fn pictures_aired_before_the_window_neither_crowd_out_nor_outshine_the_ones_inside_it() {
    // The clip aired six times an hour earlier (a loop, replays) and once now. Only the
    // frames aired in the keyframe's window are looked at: the old airings take no
    // verification place and are no rival moment for the ratio test across time.
    let mut live = Library::new();
    for round in 0..6 {
        live.insert_live("feed", ORIGIN, 2 * HOURS, &[], &aired(round * 40_000));
    }
    live.insert_live("feed", ORIGIN, 2 * HOURS, &[], &aired(HOURS));
    let captured = ORIGIN + HOURS + KEYFRAME_AT + 10_000;
    let found = features_at(&live, captured, LiveWindow::default());
    assert!(at_its_moment(&found, "feed", HOURS), "{found:?}");
    // Over the whole feed (a window reaching every airing), seven airings of one picture are
    // no one moment: none verifies.
    let everything = LiveWindow { max_delay_ms: 10 * HOURS, tolerance_ms: HOURS };
    assert_eq!(features_at(&live, captured, everything), []);
}

#[test]
fn feature_frames_expire_with_the_feed_retention_and_leave_with_the_feed() {
    let mut live = Library::new();
    let all = aired(0);
    live.insert_live("short", ORIGIN, 60_000, &[], &all);
    live.insert_live("long", ORIGIN, 2 * HOURS, &[], &all);
    let window = LiveWindow { max_delay_ms: HOURS, tolerance_ms: 0 };
    // A minute after the clip's 10th second aired: the short feed keeps what aired since.
    live.expire_live(ORIGIN + 70_000, window);
    let kept = all.iter().filter(|f| f.ts_ms >= ORIGIN + 10_000).count();
    assert_eq!(live.live_feature_frames(), kept + all.len());
    live.expire_live(ORIGIN + 100_000, window);
    assert_eq!(live.live_feature_frames(), all.len());
    let found = features_at(&live, ORIGIN + 100_000, window);
    assert!(at_its_moment(&found, "long", 0), "{found:?}");
    assert!(live.remove_live("long"));
    assert_eq!(live.live_feature_frames(), 0);
    assert_eq!(features_at(&live, ORIGIN + 100_000, window), []);
}

#[test]
fn feature_frames_leave_once_no_lookup_can_reach_them_and_pdq_frames_stay_for_the_retention() {
    let mut live = Library::new();
    let all = aired(0);
    let last = all.last().unwrap().ts_ms;
    let scene = h(&[7]);
    live.insert_live("feed", ORIGIN, 2 * HOURS, &[frame(last, scene)], &[]);
    live.insert_live("feed", ORIGIN, 2 * HOURS, &[], &all);
    let window = LiveWindow::default();
    let reach = window.reach_ms();
    assert!((120_000..=HOURS).contains(&reach), "{reach}");
    // A keyframe that reaches the worker late, captured two minutes after the clip aired,
    // still verifies as long as its frames are within reach.
    live.expire_live(last + reach, window);
    assert_eq!(live.live_feature_frames(), 1, "the last feature frame is just within reach");
    live.expire_live(last + reach + 1, window);
    assert_eq!(live.live_feature_frames(), 0);
    assert!(live.contains_live("feed"));
    // The PDQ frame stays for the feed's retention: an hour later it is still held.
    live.expire_live(last + HOURS, window);
    assert_eq!(live.live_frames(), 1);
    live.expire_live(last + 2 * HOURS + 1, window);
    assert_eq!(live.live_frames(), 0);
}

#[test]
fn feature_frames_that_crossed_the_fanout_verify_as_the_ingested_ones_do() {
    let frames = aired(60_000);
    let mut local = Library::new();
    local.insert_live("feed", ORIGIN, 2 * HOURS, &[], &frames);
    let body = encode_body(&[], &frames);
    let (_, received) = decode_body(Some(CONTENT_TYPE_V2), &body).expect("a whole body");
    assert_eq!(received.len(), frames.len());
    let mut remote = Library::new();
    remote.insert_live("feed", ORIGIN, 2 * HOURS, &[], &received);
    let captured = 60_000 + KEYFRAME_AT + 10_000;
    let (here, there) = (hits(&local, captured), hits(&remote, captured));
    assert!(at_its_moment(&there, "feed", 60_000), "{there:?}");
    let times =
        |hits: &[(String, Hit)]| hits.iter().map(|(_, h)| h.reference_ts_ms).collect::<Vec<_>>();
    assert_eq!(times(&here), times(&there));
}
