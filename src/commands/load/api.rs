//! A minimal client of the service's API and of its processes' `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// A minimal client of the API and of the processes' `/metrics`.
pub(super) struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
    metrics_urls: Vec<String>,
}

impl Api {
    pub(super) fn new(base: &str, key: &str, metrics_urls: &[String]) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        let base = base.trim_end_matches('/').to_owned();
        let metrics_urls = if metrics_urls.is_empty() {
            vec![format!("{base}/metrics")]
        } else {
            metrics_urls.to_vec()
        };
        Ok(Api { client, base, key: key.to_owned(), metrics_urls })
    }

    pub(super) async fn check(
        response: reqwest::Response,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        bail!("{what}: {status}: {}", text.chars().take(300).collect::<String>())
    }

    pub(super) async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let response = Self::check(response, &format!("GET {path}")).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    pub(super) async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let response = Self::check(response, &format!("POST {path}")).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    pub(super) async fn upload_reference(
        &self,
        file: &Path,
        min_match_seconds: f64,
    ) -> anyhow::Result<String> {
        let bytes =
            tokio::fs::read(file).await.with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .file_name()
            .map_or_else(|| "reference.mp4".to_owned(), |n| n.to_string_lossy().into_owned());
        let metadata = json!({
            "title": format!("offside load {name}"),
            "policy": { "action": "kill", "min_match_seconds": min_match_seconds },
        });
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")?,
            )
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        let response = self
            .client
            .post(format!("{}/v1/references", self.base))
            .bearer_auth(&self.key)
            .multipart(form)
            .send()
            .await
            .context("uploading the reference")?;
        let created: Value = Self::check(response, "uploading the reference").await?.json().await?;
        let id = created["id"].as_str().context("the upload answer has no id")?.to_owned();
        let started = Instant::now();
        loop {
            let r = self.get_json(&format!("/v1/references/{id}")).await?;
            match r["status"].as_str() {
                Some("ready") => return Ok(id),
                Some("processing") if started.elapsed() < Duration::from_secs(600) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => bail!("reference {id} ended {other:?}: {}", r["error"]),
            }
        }
    }

    /// Every `--metrics-url`'s exposition, one after the other (so sums run over every
    /// process). Fails when one of them does not answer: a sum that silently misses a process
    /// would under-count.
    pub(super) async fn scrape(&self) -> anyhow::Result<String> {
        let mut all = String::new();
        for url in &self.metrics_urls {
            let response =
                self.client.get(url).send().await.with_context(|| format!("GET {url}"))?;
            all.push_str(&Self::check(response, &format!("GET {url}")).await?.text().await?);
            all.push('\n');
        }
        Ok(all)
    }
}
