//! The enforcement pipeline scaled out: PostgreSQL, RabbitMQ (the machine's servers, a fresh
//! database and a unique exchange/queue prefix per test), keyframes published to the exchange
//! per the AMQP contract, `offside worker` processes next to one `offside serve`.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    TestApp, WebhookReceiver, amqp_url, eventually, query_keyframes, spawn_app_amqp,
};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use offside::queue::amqp::{AmqpConfig, ERROR_HEADER};
use offside::store::Store;
use offside::store::{cases, streams};
use serde_json::json;

/// A platform publishing to the deployment's exchange with lapin, per the contract.
struct Platform {
    names: AmqpConfig,
    conn: Connection,
    channel: Channel,
}

impl Platform {
    async fn connect(app: &TestApp) -> Platform {
        let mut names = AmqpConfig::new(amqp_url());
        names.prefix.clone_from(&app.config.amqp_prefix);
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ reachable (see README)");
        // The exchange is declared by Offside: wait until its queue exists (a passive declare
        // that fails closes the channel, so each try gets a new one).
        eventually(Duration::from_secs(20), "Offside's AMQP topology", || async {
            let ch = conn.create_channel().await.ok()?;
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            ch.queue_declare(names.work_queue().as_str().into(), passive, FieldTable::default())
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        let channel = conn.create_channel().await.expect("channel");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        Platform { names, conn, channel }
    }

    /// Publishes one message with the given headers (`ts_ms` as an AMQP integer).
    async fn publish(&self, stream: &str, ts_ms: Option<i64>, content_type: &str, body: &[u8]) {
        let mut headers = FieldTable::default();
        headers.insert("stream_id".into(), AMQPValue::LongString(stream.into()));
        if let Some(ts) = ts_ms {
            headers.insert("ts_ms".into(), AMQPValue::LongLongInt(ts));
        }
        self.channel
            .basic_publish(
                self.names.exchange().as_str().into(),
                stream.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type(content_type.into())
                    .with_headers(headers)
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }

    async fn publish_keyframes(&self, stream: &str, frames: &[(i64, Vec<u8>)]) {
        for (ts, jpeg) in frames {
            self.publish(stream, Some(*ts), "image/jpeg", jpeg).await;
        }
    }

    /// Reads `n` messages from the dead-letter queue: `(reason, body)`.
    async fn dead_letters(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        let ch = self.conn.create_channel().await.expect("channel");
        let mut consumer = ch
            .basic_consume(
                self.names.dead_letter_queue().as_str().into(),
                "inspector".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume the dead-letter queue");
        let mut out = Vec::new();
        while out.len() < n {
            let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("a dead letter within 20 s")
                .expect("open")
                .expect("delivery");
            let reason = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(ERROR_HEADER).cloned())
                .map(|v| match v {
                    AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            out.push((reason, d.data.clone()));
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        out
    }
}

/// An `offside worker` process of `app`'s deployment.
fn worker_process(app: &TestApp) -> tokio::process::Child {
    let log = std::env::var("TEST_LOG").is_ok_and(|v| v == "1");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_offside"))
        .arg("worker")
        .env("OFFSIDE_DATABASE_URL", app.config.database_url.expose())
        .env("OFFSIDE_AMQP_URL", amqp_url())
        .env("OFFSIDE_AMQP_PREFIX", &app.config.amqp_prefix)
        .env("OFFSIDE_DATA_DIR", app.env.dir.path().join("worker-data"))
        .env("OFFSIDE_INDEX_SYNC_MS", "200")
        .stdout(if log { Stdio::inherit() } else { Stdio::null() })
        .stderr(if log { Stdio::inherit() } else { Stdio::null() })
        .kill_on_drop(true)
        .spawn()
        .expect("the offside binary runs")
}

#[tokio::test]
async fn a_pirate_stream_published_to_the_exchange_is_flagged_and_a_negative_is_not() {
    let app = spawn_app_amqp().await;
    let reference = app.enforced_reference("ref_earth.mp4", "flag").await;
    let platform = Platform::connect(&app).await;
    platform.publish_keyframes("amqp-pirate", &query_keyframes("earth__portrait_crop__1")).await;
    platform
        .publish_keyframes("amqp-negative", &query_keyframes("neg_webcam_take2__none__1"))
        .await;

    let stream = app.wait_for_stream_status("amqp-pirate", "flagged").await;
    assert_eq!(stream["matches"][0]["reference_id"], reference.as_str());
    let cases = app.cases("?stream_id=amqp-pirate").await;
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["status"], "open");

    platform.publish("amqp-negative", None, "application/vnd.offside.stream-end", b"").await;
    let negative = app.wait_for_stream_status("amqp-negative", "ended").await;
    assert_eq!(negative["matches"], json!([]));
    assert!(app.cases("?stream_id=amqp-negative").await.is_empty());
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_their_reason_and_the_worker_carries_on() {
    let app = spawn_app_amqp().await;
    app.enforced_reference("ref_screencast.mp4", "flag").await;
    let platform = Platform::connect(&app).await;
    platform.publish("poison", None, "image/jpeg", b"no ts_ms header").await;
    platform.publish("poison", Some(0), "image/jpeg", b"\xff\xd8\xff\xe0 corrupt jpeg").await;
    platform.publish("poison", Some(2000), "video/mp4", b"not a keyframe").await;
    platform.publish_keyframes("after-poison", &query_keyframes("screencast__reencode__1")).await;

    let mut reasons: Vec<String> =
        platform.dead_letters(3).await.into_iter().map(|(reason, _)| reason).collect();
    reasons.sort();
    assert!(reasons.iter().any(|r| r == "missing header ts_ms"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("image:")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("unsupported content type \"video/mp4\"")),
        "{reasons:?}"
    );
    app.wait_for_stream_status("after-poison", "flagged").await;

    let metrics = app.get(None, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("offside_keyframes_dead_lettered_total"), "dead letters are counted");
}

#[tokio::test]
async fn a_worker_killed_mid_stream_loses_no_keyframe_and_the_stream_gets_exactly_one_case() {
    let mut app = spawn_app_amqp().await;
    let reference = app.enforced_reference("ref_earth.mp4", "flag").await;
    let platform = Platform::connect(&app).await;
    let database_url = app.config.database_url.expose().to_owned();
    // Only the workers consume from here on.
    app.stop().await;
    let store = Store::connect(&database_url).await.expect("database");

    // Exactly the keyframes the policy needs (three, for 4 s of matching): the first worker
    // gets two of them, too few to decide, and is killed mid-stream; if any keyframe it held
    // unacked were lost, the second worker could not flag the stream with the third.
    let frames: Vec<_> = query_keyframes("earth__color__1").into_iter().take(3).collect();
    platform.publish_keyframes("victim", &frames[..2]).await;
    let mut first = worker_process(&app);
    eventually(Duration::from_secs(30), "the first worker taking the stream", || async {
        streams::get(store.pool(), "victim").await.ok().flatten().map(|_| ())
    })
    .await;
    first.kill().await.expect("SIGKILL");
    let at_kill = streams::get(store.pool(), "victim").await.unwrap().unwrap();
    assert_eq!(at_kill.status, streams::StreamStatus::Live, "two keyframes cannot decide");

    platform.publish_keyframes("victim", &frames[2..]).await;
    let _second = worker_process(&app);
    let flagged = eventually(Duration::from_secs(30), "the second worker flagging", || async {
        streams::get(store.pool(), "victim")
            .await
            .ok()
            .flatten()
            .filter(|s| s.status == streams::StreamStatus::Flagged)
    })
    .await;
    assert_eq!(flagged.id, "victim");
    let matches = streams::matches(store.pool(), "victim").await.unwrap();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].reference_id, reference);
    assert_eq!(matches[0].decided_at_ts_ms, frames[2].0, "decided on the last keyframe");
    let filter = cases::CaseFilter { stream_id: Some("victim"), ..cases::CaseFilter::default() };
    assert_eq!(cases::list(store.pool(), &filter, 100).await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn three_worker_processes_and_one_serve_make_exactly_one_case_and_one_takedown() {
    let app = spawn_app_amqp().await;
    let receiver = WebhookReceiver::start().await;
    let secret = "scale-out-secret-0123456789";
    app.create_webhook(&app.admin_key, &receiver.url, &["stream.killed"], secret).await;
    let reference = app.enforced_reference("ref_screencast.mp4", "kill").await;
    let _workers: Vec<_> = (0..3).map(|_| worker_process(&app)).collect();
    let platform = Platform::connect(&app).await;
    // Every keyframe twice (a platform retrying), spread over four processes' consumers.
    let frames = query_keyframes("screencast__mirror__1");
    platform.publish_keyframes("busy", &frames).await;
    platform.publish_keyframes("busy", &frames).await;

    let stream = app.wait_for_stream_status("busy", "killed").await;
    assert_eq!(stream["matches"].as_array().unwrap().len(), 1);
    assert_eq!(stream["matches"][0]["reference_id"], reference.as_str());
    eventually(Duration::from_secs(10), "the takedown", || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await;
    // Later keyframes and redeliveries change nothing.
    platform.publish_keyframes("busy", &frames).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: HashSet<String> =
        receiver.events().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "exactly one takedown: {:?}", receiver.events());
    let request = &receiver.requests()[0];
    assert!(crate::common::signature_is_valid(
        secret,
        request.signature.as_deref().unwrap(),
        &request.body
    ));
    assert_eq!(app.cases("?stream_id=busy").await.len(), 1);
    // The optional filters type-check on PostgreSQL too.
    let killed: Vec<serde_json::Value> =
        app.list_streams(&app.admin_key, "?status=killed").await.json().await.unwrap();
    assert_eq!(killed.len(), 1);
    let audit: Vec<serde_json::Value> =
        app.audit(&app.admin_key, "?target_type=stream&target_id=busy").await.json().await.unwrap();
    assert_eq!(audit.len(), 1, "one automatic decision: {audit:?}");
    assert_eq!(audit[0]["actor"], "policy");
}

/// The local ports of `pid`'s connections to the broker.
fn broker_ports_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("ss").args(["-tnpH"]).output().expect("ss runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")) && l.contains(":5672"))
        .filter_map(|l| {
            // State Recv-Q Send-Q Local:Port Peer:Port Process
            let local = l.split_whitespace().nth(3)?;
            Some(local.rsplit(':').next()?.to_owned())
        })
        .collect()
}

/// Makes the broker drop the connections of `pid` only (as a broker restart does to them),
/// leaving every other test's and helper's connections alone. Returns how many it closed.
fn broker_drops_connections_of(pid: u32) -> usize {
    let ports = broker_ports_of(pid);
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "peer_port"])
        .output()
        .expect("rabbitmqctl runs");
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split_whitespace();
        let (Some(conn), Some(port)) = (cols.next(), cols.next()) else { continue };
        if ports.iter().any(|p| p == port) {
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", conn, "test: broker went away"])
                .stdout(Stdio::null())
                .status()
                .expect("rabbitmqctl runs");
            assert!(status.success());
            closed += 1;
        }
    }
    closed
}

#[tokio::test]
async fn a_worker_whose_broker_connection_drops_reconnects_and_processes_later_keyframes() {
    let mut app = spawn_app_amqp().await;
    let reference = app.enforced_reference("ref_earth.mp4", "flag").await;
    let platform = Platform::connect(&app).await;
    let database_url = app.config.database_url.expose().to_owned();
    app.stop().await;
    let store = Store::connect(&database_url).await.expect("database");
    let mut worker = worker_process(&app);
    let pid = worker.id().expect("running");

    let frames = query_keyframes("earth__fps_speed__1");
    platform.publish_keyframes("reconnect", &frames[..1]).await;
    eventually(Duration::from_secs(30), "the worker taking the first keyframe", || async {
        streams::get(store.pool(), "reconnect").await.ok().flatten().map(|_| ())
    })
    .await;
    let closed =
        tokio::task::spawn_blocking(move || broker_drops_connections_of(pid)).await.unwrap();
    assert!(closed >= 1, "the worker's connections were found and closed");

    platform.publish_keyframes("reconnect", &frames[1..]).await;
    let flagged = eventually(Duration::from_secs(40), "flagged after reconnecting", || async {
        streams::get(store.pool(), "reconnect")
            .await
            .ok()
            .flatten()
            .filter(|s| s.status == streams::StreamStatus::Flagged)
    })
    .await;
    assert_eq!(flagged.id, "reconnect");
    assert!(worker.try_wait().expect("status").is_none(), "the worker never crashed");
    let matches = streams::matches(store.pool(), "reconnect").await.unwrap();
    assert_eq!(matches[0].reference_id, reference);
    store.close().await;
}
