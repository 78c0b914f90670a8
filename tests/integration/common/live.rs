//! Helpers of the live-feed tests: the development clip, the ffmpeg CLI as the rights holder's
//! encoder, and airing an MPEG-TS file over UDP on loopback.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use offside::store::now_ms;
use serde_json::Value;

/// The development-set clip the live tests air (the Sintel trailer).
pub fn dev_clip() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval-dev/sources/ref_sintel.mp4");
    assert!(
        path.is_file(),
        "the development set must sit beside the repository: {}",
        path.display()
    );
    path
}

/// Runs the ffmpeg CLI to completion (quiet, overwriting outputs); panics if it fails.
pub fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg CLI installed");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// The rights holder's side: an ffmpeg CLI process, killed when dropped.
pub struct Sender(Child);

impl Sender {
    /// Starts `ffmpeg ARGS` in the background.
    pub fn spawn(args: &[&str]) -> Sender {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg CLI installed");
        Sender(child)
    }

    /// Stops sending at once, as an encoder that loses power.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A UDP port nothing listens on right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP port nothing listens on right now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Airs the MPEG-TS file `ts` in real time over UDP to `port`. Returns once the first packet is
/// out (a copy goes to a socket of the test), with the wall-clock time it left.
pub async fn air_udp(ts: &Path, port: u16) -> (Sender, i64) {
    let probe = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let probe_port = probe.local_addr().unwrap().port();
    let tee = format!(
        "[f=mpegts]udp://127.0.0.1:{port}?pkt_size=1316|[f=mpegts]udp://127.0.0.1:{probe_port}?pkt_size=1316"
    );
    let ts = ts.to_str().expect("UTF-8 path");
    let sender = Sender::spawn(&["-re", "-i", ts, "-c", "copy", "-map", "0", "-f", "tee", &tee]);
    let mut packet = [0_u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), probe.recv(&mut packet))
        .await
        .expect("the feed airs")
        .unwrap();
    (sender, now_ms())
}

/// The JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Encodes `seconds` of [`dev_clip`] from `from_ms` as the broadcast a rights holder's encoder
/// sends: MPEG-TS, 640x360 H.264 with a keyframe every second so a receiver can join at any
/// time. Written aside and renamed, so an interrupted run leaves no truncated feed at `out`.
pub fn encode_feed(out: &Path, from_ms: i64, seconds: u32) {
    let partial = out.with_extension(format!("partial-{}.ts", std::process::id()));
    ffmpeg(&[
        "-ss",
        &format!("{from_ms}ms"),
        "-t",
        &seconds.to_string(),
        "-i",
        dev_clip().to_str().expect("UTF-8 path"),
        "-an",
        "-vf",
        "scale=640:360",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "24",
        "-f",
        "mpegts",
        partial.to_str().expect("UTF-8 path"),
    ]);
    std::fs::rename(&partial, out).expect("feed in place");
}

/// A pirate's keyframes of `video` at positions `from_ms..until_ms`: shrunk to 480 pixels wide,
/// one JPEG (quality 70) every `every_ms` (the first frame at or after each multiple, as
/// `offside tap` extracts them), keyed by position in ms.
pub fn pirate_keyframes(
    video: &Path,
    every_ms: i64,
    from_ms: i64,
    until_ms: i64,
) -> Vec<(i64, Vec<u8>)> {
    let options = offside::media::KeyframeOptions {
        interval: Duration::from_millis(every_ms.unsigned_abs()),
        max_long_side: Some(480),
        jpeg_quality: 70,
        ..offside::media::KeyframeOptions::default()
    };
    let mut out = Vec::new();
    offside::media::extract_keyframes(video.to_str().expect("UTF-8 path"), &options, |k| {
        if k.ts_ms >= until_ms {
            return std::ops::ControlFlow::Break(());
        }
        if k.ts_ms >= from_ms {
            out.push((k.ts_ms, k.jpeg));
        }
        std::ops::ControlFlow::Continue(())
    })
    .expect("the pirate's video decodes");
    out
}
