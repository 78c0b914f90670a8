//! `offside tap`: a clip made with the ffmpeg CLI is tapped into RabbitMQ (a unique exchange
//! prefix per test) and into a test app's HTTP API, and what arrives is checked.

use std::time::{Duration, Instant};

use offside::commands::tap::{self, TapArgs};
use offside::config::SecretUrl;
use offside::queue::amqp::{AmqpConfig, AmqpQueue};
use offside::queue::{DeliveryStream, KeyframeQueue, QueueMessage};
use offside::store::keys::Role;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn amqp_url() -> String {
    std::env::var("OFFSIDE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn args(input: &std::path::Path, stream_id: &str) -> TapArgs {
    TapArgs {
        input: input.display().to_string(),
        stream_id: stream_id.to_owned(),
        account_id: Some("streamer-7".to_owned()),
        every_secs: 2.0,
        realtime: false,
        api_url: None,
        api_key: None,
        amqp_prefix: format!("tap{}.", uuid::Uuid::new_v4().simple()),
        jpeg_quality: 80,
        max_long_side: 1280,
        read_timeout_secs: 10,
        no_end: false,
    }
}

async fn next_message(consumer: &mut Box<dyn DeliveryStream>) -> QueueMessage {
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a message within 10 s")
        .expect("the queue is open");
    let message = delivery.message.clone().expect("the message follows the contract");
    delivery.ack().await.expect("ack");
    message
}

#[tokio::test]
async fn a_seven_second_clip_becomes_four_jpeg_keyframes_two_seconds_apart_then_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let clip = crate::common::make_video(dir.path(), "clip.mp4", 7);
    let args = args(&clip, "tap-stream-1");
    let mut cfg = AmqpConfig::new(amqp_url());
    cfg.prefix = args.amqp_prefix.clone();
    let queue = AmqpQueue::new(cfg);
    let mut consumer = queue.consume().await.expect("RabbitMQ reachable");

    let before_ms = offside::store::now_ms();
    let url = SecretUrl::new(amqp_url());
    let summary = tap::run(&args, Some(&url), CancellationToken::new()).await.expect("tap runs");
    let after_ms = offside::store::now_ms();
    assert_eq!(summary.published, 4);
    assert!(summary.ended && !summary.interrupted);

    let mut stamps = Vec::new();
    for _ in 0..4 {
        let QueueMessage::Keyframe(k) = next_message(&mut consumer).await else {
            panic!("expected a keyframe before the end of the stream");
        };
        assert_eq!(k.stream_id, "tap-stream-1");
        assert_eq!(k.account_id.as_deref(), Some("streamer-7"));
        assert_eq!(k.content_type, "image/jpeg");
        let captured = k.captured_at_ms.expect("captured_at_ms is sent");
        assert!((before_ms..=after_ms).contains(&captured), "captured_at_ms is the wall clock");
        let picture = image::load_from_memory(&k.body).expect("the body is a decodable JPEG");
        assert_eq!((picture.width(), picture.height()), (320, 240));
        stamps.push(k.ts_ms);
    }
    assert_eq!(stamps, vec![0, 2000, 4000, 6000]);
    assert_eq!(
        next_message(&mut consumer).await,
        QueueMessage::StreamEnd(offside::queue::StreamEndMessage {
            stream_id: "tap-stream-1".into()
        })
    );
}

#[tokio::test]
async fn stopping_a_realtime_tap_ends_quickly_without_ending_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let clip = crate::common::make_video(dir.path(), "clip.mp4", 20);
    let mut args = args(&clip, "tap-stream-2");
    args.realtime = true;
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let url = SecretUrl::new(amqp_url());
    let summary =
        tap::run(&args, Some(&url), cancel).await.expect("an interrupted tap is not an error");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert!(summary.interrupted && !summary.ended);
    // Real-time pacing: 2.5 s of wall time covers the keyframes at 0 and 2000 ms only.
    assert_eq!(summary.published, 2);
}

#[tokio::test]
async fn a_clip_tapped_through_the_http_api_reaches_the_pipeline_and_ends_the_stream() {
    let app = crate::common::spawn_app().await;
    let ingest_key = app.key_for(Role::Ingest, None).await;
    let clip = crate::common::make_video(app.env.dir.path(), "clip.mp4", 5);
    let mut args = args(&clip, "tap-http-1");
    args.api_url = Some(app.address.clone());
    args.api_key = Some(ingest_key);

    let summary = tap::run(&args, None, CancellationToken::new()).await.expect("tap runs");
    assert_eq!(summary.published, 3);
    assert!(summary.ended);

    let metrics = app.get(None, "/metrics").await.text().await.unwrap();
    let accepted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("offside_keyframes_published_total") && l.contains("http"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // Three keyframes and the end message went through the HTTP ingest.
    assert_eq!(accepted, 4.0);

    let started = Instant::now();
    loop {
        let response = app.get(Some(&app.admin_key), "/v1/streams/tap-http-1").await;
        if response.status().is_success() {
            let stream: Value = response.json().await.unwrap();
            if stream["status"] == "ended" {
                assert_eq!(stream["account_id"], "streamer-7");
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the stream never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tapping_a_missing_file_fails_with_the_path_and_a_missing_key_is_named() {
    let mut args = args(std::path::Path::new("/nonexistent/clip.mp4"), "tap-stream-3");
    args.api_url = Some("http://127.0.0.1:9".to_owned());
    args.api_key = Some("unused".to_owned());
    let err = tap::run(&args, None, CancellationToken::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/clip.mp4"), "{err:#}");

    args.api_key = None;
    let err = tap::run(&args, None, CancellationToken::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("--api-key"), "{err:#}");
}
