//! Measurements of live ingest (not assertions: tests never assert timings). Run with
//! `cargo test --release --test live_cost -- --ignored --nocapture`.
//!
//! A 720p25 MPEG-TS feed made from a development-set clip airs over UDP on loopback for a
//! minute while a [`LiveService`] ingests it in this process. It reports:
//! - feed-to-matchable latency: for sample positions of the clip, the time from the moment the
//!   sender aired that position until a keyframe of it matches in the live library;
//! - the CPU this process spent (user + system, from `/proc/self/stat`) per wall second.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Db, TestEnv};
use offside::live::store::{self as feeds, NewFeed};
use offside::live::{IngestOptions, LiveService, LiveWindow, SharedLiveLibrary};
use offside::media::{KeyframeOptions, extract_keyframes};
use offside::recognition::hash_keyframe;
use offside::references::{Policy, ReferenceSource, ReferenceStatus};
use offside::store::references::{self, NewReference};
use offside::store::{Store, now_ms};
use tokio_util::sync::CancellationToken;

const SECONDS: i64 = 60;

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
    let clip =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval-dev/sources/ref_sintel.mp4");
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
    let library = SharedLiveLibrary::default();
    let service = Arc::new(LiveService::new(
        store.clone(),
        library.clone(),
        None,
        "measure",
        IngestOptions::default(),
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
            let hits = library.read().unwrap().lookup(hashes, now, LiveWindow::default(), 31, 256);
            // A hit on this position of the feed (not on a similar frame elsewhere).
            if hits
                .iter()
                .any(|(_, h)| (-500..=5_000).contains(&(h.reference_ts_ms + origin - aired)))
            {
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
    let cpu_seconds = (cpu_ticks() - ticks0) as f64 / ticks_per_second();
    let wall = wall0.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = task.await;
    let row = feeds::get(store.pool(), "feed").await.unwrap().unwrap();
    latencies.sort_unstable();
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
