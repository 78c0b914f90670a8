//! A RabbitMQ restart under a running service: it reconnects, loses no keyframe it accepted,
//! and still decides.
//!
//! This test stops and starts the broker's application (`rabbitmqctl stop_app`/`start_app`),
//! which would break any other test talking to the broker at the same time: it lives alone in
//! this binary, which `scripts/test` runs on its own after all the others. It needs
//! `rabbitmqctl` with the rights to use it (root, as in CI); without them it fails rather than
//! passing unchecked.

use std::process::Command;
use std::time::Duration;

use crate::common::{eventually, query_keyframes, spawn_app_amqp};
use reqwest::StatusCode;

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl").args(args).status().expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?} failed: {status}");
}

/// Restarts the broker's application on drop too, so a failing test never leaves it stopped.
struct BrokerRestart;

impl BrokerRestart {
    fn stop() -> Self {
        rabbitmqctl(&["-q", "stop_app"]);
        BrokerRestart
    }
}

impl Drop for BrokerRestart {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["-q", "start_app"]).status();
        let _ = Command::new("rabbitmqctl").args(["-q", "await_startup"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_service_reconnects_and_still_flags_the_stream() {
    let app = spawn_app_amqp().await;
    let reference = app.enforced_reference("ref_earth.mp4", "flag").await;
    let frames = query_keyframes("earth__fps_speed__1");
    assert!(frames.len() >= 4);
    app.post_keyframes(&app.admin_key, "restart", &frames[..1]).await;
    app.wait_for_stream_status("restart", "live").await;

    let restart = BrokerRestart::stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(restart);

    // Once the broker is back, keyframes are accepted again (ingest answers 503 until the
    // publisher has reconnected) and the workers, reconnected too, decide on them.
    for (ts, jpeg) in &frames[1..] {
        eventually(Duration::from_secs(60), "ingest accepting keyframes again", || async {
            let r = app
                .post_keyframe(
                    &app.admin_key,
                    "restart",
                    &format!("ts_ms={ts}"),
                    "image/jpeg",
                    jpeg.clone(),
                )
                .await;
            (r.status() == StatusCode::ACCEPTED).then_some(())
        })
        .await;
    }
    let stream = eventually(Duration::from_secs(60), "flagged after the restart", || async {
        app.stream("restart").await.filter(|s| s["status"] == "flagged")
    })
    .await;
    assert_eq!(stream["matches"][0]["reference_id"], reference.as_str());
    assert_eq!(app.cases("?stream_id=restart").await.len(), 1);
}
