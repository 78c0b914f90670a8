//! Measurements of live ingest (not assertions: tests never assert timings). Run with
//! `cargo test --release --test integration live_cost:: -- --ignored --nocapture`.
//!
//! A 720p25 MPEG-TS feed made from a development-set clip airs over UDP on loopback for a
//! minute while a [`LiveService`] ingests it in this process. It reports:
//! - feed-to-matchable latency: for sample positions of the clip, the time from the moment the
//!   sender aired that position until a keyframe of it matches in the live library, through
//!   the worker's two-tier live lookup;
//! - the CPU this process spent (user + system, from `/proc/self/stat`) per wall second;
//! - time to flag: once the minute has aired, pirates trailing the feed by ten seconds start at
//!   every other second of it and send a 480p keyframe every 2 s; each goes through the lookup
//!   the worker makes (`recognition::look_up_luma` with a `LiveQuery` at the keyframe's capture
//!   time: the PDQ tier, and the geometric tier on its schedule's keyframes) and the default
//!   decision rule. It prints how many are flagged within
//!   `min_match_seconds` + 2 s of their first keyframe, and the median and p90 of the stream
//!   time it took; the same from their first usable keyframe, and over their usable keyframes
//!   only (usable: a PDQ view of quality 50 or more, or local features; black and flat
//!   keyframes carry no picture to recognise). For each pirate flagged later than that, it
//!   prints what each keyframe brought (PDQ quality, feature count, hits). (The
//!   pipeline's own latency, queue to decision, is measured by `offside load`: docs/LOAD.md.)

use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Db, TestEnv};
use fingerprints::Luma;
use offside::domain::{Policy, ReferenceSource, ReferenceStatus};
use offside::live::store::{self as feeds, NewFeed};
use offside::live::{IngestOptions, LiveService};
use offside::media::{KeyframeOptions, extract_keyframes};
use offside::recognition::{
    KeyframeCost, LiveQuery, RecognitionConfig, SharedLibrary, StreamActivity, StreamRecognizer,
    decode_keyframe, hash_keyframe, hash_luma, look_up_luma,
};
use offside::store::references::{self, NewReference};
use offside::store::{Store, now_ms};
use tokio_util::sync::CancellationToken;

const SECONDS: i64 = 60;
/// The simulated pirates trail the feed by this much.
const PIRATE_DELAY_MS: i64 = 10_000;
/// ... send a keyframe this often ...
const PIRATE_KEYFRAME_MS: i64 = 2_000;
/// ... and give up after this many keyframes.
const PIRATE_KEYFRAMES: i64 = 10;

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a one-minute measurement; run explicitly"]
async fn measure_live_ingest_latency_and_cpu_on_a_720p25_feed() {
    let dir = tempfile::tempdir().unwrap();
    // OFFSIDE_LIVE_COST_CLIP picks another development-set source (default: the Sintel trailer).
    let name = std::env::var("OFFSIDE_LIVE_COST_CLIP").unwrap_or_else(|_| "ref_sintel".into());
    let clip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../shared/eval-dev/sources/{name}.mp4"));
    let feed = dir.path().join("feed720p25.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "1", "-i"])
        .arg(&clip)
        .args([
            "-t",
            &SECONDS.to_string(),
            "-an",
            "-vf",
            "scale=1280:720,fps=25",
            "-c:v",
            "libx264",
        ])
        .args(["-preset", "veryfast", "-g", "25", "-f", "mpegts"])
        .arg(&feed)
        .status()
        .unwrap();
    assert!(status.success());
    // Keyframes a pirate would send, every five seconds of the feed.
    let mut probes = Vec::new();
    extract_keyframes(
        feed.to_str().unwrap(),
        &KeyframeOptions { interval: Duration::from_secs(5), ..KeyframeOptions::default() },
        |k| {
            if k.ts_ms > 0 {
                probes.push((k.ts_ms, hash_keyframe(&k.jpeg).unwrap()));
            }
            ControlFlow::Continue(())
        },
    )
    .unwrap();

    let env = TestEnv::new(Db::Sqlite).await;
    let store = Store::connect(&env.database_url).await.unwrap();
    store.migrate().await.unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let policy = Policy::default();
    references::insert(
        store.pool(),
        &NewReference {
            id: "feed",
            rights_holder_id: None,
            title: "720p25",
            source: ReferenceSource::Video,
            status: ReferenceStatus::Live,
            policy: &policy,
            upload_path: None,
        },
    )
    .await
    .unwrap();
    let origin = now_ms();
    feeds::insert(
        store.pool(),
        &NewFeed {
            reference_id: "feed",
            url: &format!("udp://127.0.0.1:{port}"),
            origin_ms: origin,
            starts_at: None,
            ends_at: None,
            retention_ms: 7_200_000,
            archive: false,
        },
    )
    .await
    .unwrap();
    let library = SharedLibrary::default();
    let service = Arc::new(LiveService::new(
        store.clone(),
        library.clone(),
        None,
        "measure",
        // The feed is on loopback; ingest options default to public addresses only.
        IngestOptions {
            outbound: offside::net::OutboundPolicy::allow_all(),
            ..IngestOptions::default()
        },
    ));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&service).run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let probe_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let probe = tokio::net::UdpSocket::bind(("127.0.0.1", probe_port)).await.unwrap();
    let tee = format!(
        "[f=mpegts]udp://127.0.0.1:{port}?pkt_size=1316|[f=mpegts]udp://127.0.0.1:{probe_port}?pkt_size=1316"
    );
    let mut sender = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(&feed)
        .args(["-c", "copy", "-map", "0", "-f", "tee", &tee])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0_u8; 2048];
    probe.recv(&mut buf).await.unwrap();
    let aired_at = now_ms();
    let (ticks0, wall0) = (cpu_ticks(), Instant::now());

    let mut latencies = Vec::new();
    for (position, hashes) in &probes {
        let aired = aired_at + position;
        loop {
            let now = now_ms();
            let hits = library.read().unwrap().hits(
                hashes,
                &RecognitionConfig::default(),
                Some(LiveQuery::at(now)),
            );
            // A hit on this position of the feed (not on a similar frame elsewhere).
            if hits.iter().any(|h| (-500..=5_000).contains(&(h.reference_ts_ms + origin - aired))) {
                eprintln!("position {position} ms matchable {} ms after it aired", now - aired);
                latencies.push(now - aired);
                break;
            }
            if now > aired + 10_000 {
                eprintln!("position {position} ms never matched");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = sender.wait();
    let flag_times = time_to_flag(&library, &pirate_keyframes(&feed), aired_at);
    let cpu_seconds = (cpu_ticks() - ticks0) as f64 / ticks_per_second();
    let wall = wall0.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = task.await;
    let row = feeds::get(store.pool(), "feed").await.unwrap().unwrap();
    latencies.sort_unstable();
    assert!(!flag_times.is_empty());
    eprintln!(
        "live ingest 720p25: {} frames hashed in {wall:.1} s; CPU {cpu_seconds:.1} s = {:.3} of a core",
        row.frames,
        cpu_seconds / wall
    );
    eprintln!(
        "feed-to-matchable latency over {} positions: min {} ms, median {} ms, max {} ms",
        latencies.len(),
        latencies.first().copied().unwrap_or(-1),
        latencies.get(latencies.len() / 2).copied().unwrap_or(-1),
        latencies.last().copied().unwrap_or(-1)
    );
}

/// A pirate's keyframes of the feed: the picture shrunk to 480 pixels wide and re-encoded as
/// JPEG, one per second of the feed, keyed by feed position (ms), decoded as the worker decodes
/// them.
fn pirate_keyframes(feed: &Path) -> Vec<(i64, Luma)> {
    let mut out = Vec::new();
    let options = KeyframeOptions {
        interval: Duration::from_secs(1),
        max_long_side: Some(480),
        jpeg_quality: 70,
        ..KeyframeOptions::default()
    };
    extract_keyframes(feed.to_str().unwrap(), &options, |k| {
        out.push((k.ts_ms, decode_keyframe(&k.jpeg).unwrap()));
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

/// Runs a pirate from every other second of the aired feed through the worker's live lookup
/// and the default rule; prints the figures and returns each pirate's time to flag (stream ms
/// from its first keyframe), `None` when it was not flagged within its keyframes.
fn time_to_flag(
    library: &SharedLibrary,
    keyframes: &[(i64, Luma)],
    aired_at: i64,
) -> Vec<Option<i64>> {
    let cfg = RecognitionConfig::default();
    let min_seconds = cfg.matcher.min_matched_seconds;
    let library = library.read().unwrap();
    let at = |position: i64| keyframes.iter().find(|(ts, _)| *ts >= position).map(|(_, k)| k);
    let mut out = Vec::new();
    let last_start = SECONDS * 1000 - PIRATE_KEYFRAME_MS * PIRATE_KEYFRAMES;
    for start in (0..=last_start).step_by(2_000) {
        let mut recognizer = StreamRecognizer::new(cfg.clone());
        let mut activity = StreamActivity::default();
        let mut flagged = None;
        let mut first_usable = None;
        let mut usable = 0u32;
        // What each keyframe brought, printed for the pirates flagged late.
        let mut trace = Vec::new();
        for k in 0..PIRATE_KEYFRAMES {
            let stream_ts = k * PIRATE_KEYFRAME_MS;
            let Some(luma) = at(start + stream_ts) else { break };
            if !hash_luma(luma).carries_evidence() {
                trace.push(format!("{stream_ts}: nothing to look up (black or flat)"));
                continue;
            }
            first_usable.get_or_insert(stream_ts);
            usable += 1;
            let captured_at = aired_at + start + stream_ts + PIRATE_DELAY_MS;
            // The worker's lookup, the geometric tier on its schedule's keyframes.
            let live = Some(LiveQuery::at(captured_at));
            let mut cost = KeyframeCost::default();
            let found =
                look_up_luma(|| &*library, luma, &cfg, live, stream_ts, activity, &mut cost);
            let hits = library.keyframe_hits(&found.hits, cfg.tiers);
            activity.record(stream_ts, found.looked_up_features(), !hits.is_empty());
            let hashes = &found.hashes;
            trace.push(format!(
                "{stream_ts}: PDQ quality {:?}, features {}, hits at reference ms {:?}",
                hashes.hashes.iter().map(|h| h.quality).max(),
                hashes
                    .features
                    .as_ref()
                    .map_or("not looked up".to_owned(), |f| f.len().to_string()),
                hits.iter().map(|h| h.reference_ts_ms).collect::<Vec<_>>()
            ));
            recognizer.observe(stream_ts, &hits);
            if recognizer
                .evidence()
                .iter()
                .any(|(_, e)| e.is_conclusive_after(&cfg.matcher, min_seconds))
            {
                flagged = Some((stream_ts, stream_ts - first_usable.unwrap_or(0), usable));
                break;
            }
        }
        eprintln!(
            "pirate from {start} ms: flagged after (ms of stream, ms after its first usable keyframe, usable keyframes) {flagged:?}"
        );
        if flagged.is_none_or(|f| f.0 as f64 > (min_seconds + 2.0) * 1000.0) {
            for line in &trace {
                eprintln!("    keyframe at stream ms {line}");
            }
        }
        out.push(flagged);
    }
    let summary = |what: &str, mut times: Vec<i64>| {
        times.sort_unstable();
        let within = times.iter().filter(|&&t| t as f64 <= (min_seconds + 2.0) * 1000.0).count();
        eprintln!(
            "time to flag {what}, over {} pirates (min_match_seconds {min_seconds}): {within} within min_match_seconds + 2 s, {} flagged at all; median {} ms, p90 {} ms",
            out.len(),
            times.len(),
            times.get(times.len() / 2).copied().unwrap_or(-1),
            times.get(times.len() * 9 / 10).copied().unwrap_or(-1),
        );
    };
    summary("from the first keyframe", out.iter().flatten().map(|t| t.0).collect());
    summary("from the first usable keyframe", out.iter().flatten().map(|t| t.1).collect());
    // Black and flat keyframes carry nothing to look up (no PDQ view of usable quality, no
    // local features): the stream time of the usable keyframes alone shows how fast the rule
    // decides once there is something to recognise.
    summary(
        "over usable keyframes only",
        out.iter().flatten().map(|t| i64::from(t.2 - 1) * PIRATE_KEYFRAME_MS).collect(),
    );
    out.into_iter().map(|t| t.map(|t| t.0)).collect()
}
