//! What `offside load` reports: percentiles, the memory verdict and the text rendering.

use serde_json::{Value, json};

/// Memory per pid: first and last sample, peak, and whether it stayed flat. Flat means the
/// mean of the last quarter of samples is within 10 % (and 32 MiB) of the mean of the second
/// quarter: the first quarter is warm-up (allocator arenas, caches filling).
pub(super) fn memory_verdict(samples: &[Value], pids: &[u32]) -> Value {
    let mut out = serde_json::Map::new();
    for pid in pids {
        let series: Vec<f64> =
            samples.iter().filter_map(|s| s["rss_bytes"][pid.to_string()].as_f64()).collect();
        if series.is_empty() {
            out.insert(pid.to_string(), json!({"error": "no samples (wrong pid?)"}));
            continue;
        }
        let q = series.len() / 4;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let (early, late) = if q >= 1 {
            (mean(&series[q..2 * q]), mean(&series[series.len() - q..]))
        } else {
            (series[0], series[series.len() - 1])
        };
        let growth = late - early;
        let flat = growth <= (early * 0.10).max(32.0 * 1024.0 * 1024.0);
        let mib = |b: f64| (b / 1024.0 / 1024.0 * 10.0).round() / 10.0;
        out.insert(
            pid.to_string(),
            json!({
                "first_mib": mib(series[0]),
                "last_mib": mib(series[series.len() - 1]),
                "peak_mib": mib(series.iter().copied().fold(0.0, f64::max)),
                "growth_after_warmup_mib": mib(growth),
                "samples": series.len(),
                "flat": flat,
            }),
        );
    }
    Value::Object(out)
}

pub(super) fn percentiles(xs: &[f64]) -> Value {
    if xs.is_empty() {
        return Value::Null;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    json!({ "n": v.len(), "p50": at(0.5), "p99": at(0.99), "max": v[v.len() - 1] })
}

pub(super) fn render(r: &Value) -> String {
    let ms = |v: &Value| {
        if v.is_null() {
            "-".to_owned()
        } else {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                v["p50"].as_f64().unwrap_or(f64::NAN),
                v["p99"].as_f64().unwrap_or(f64::NAN)
            )
        }
    };
    let mut out = String::new();
    out.push_str(&format!(
        "load: {} streams ({} pirate) via {}, target {} keyframes/s for {:.0} s\n",
        r["streams"],
        r["pirate_streams"],
        r["via"].as_str().unwrap_or(""),
        r["target_rate"],
        r["duration_s"].as_f64().unwrap_or(0.0)
    ));
    out.push_str(&format!(
        "published      {} keyframes, {:.1}/s ({} errors{}); broker/API answer {}\n",
        r["published"],
        r["published_per_s"].as_f64().unwrap_or(0.0),
        r["publish_errors"],
        r["last_publish_error"].as_str().map(|e| format!(": {e}")).unwrap_or_default(),
        ms(&r["publish_ms"]),
    ));
    out.push_str(&format!(
        "processed      {:.0} during load ({:.1}/s), {:.0} in all after a {:.1} s drain ({:.1}/s end to end)\n",
        r["processed_during_load"].as_f64().unwrap_or(0.0),
        r["processed_per_s_during_load"].as_f64().unwrap_or(0.0),
        r["processed_total"].as_f64().unwrap_or(0.0),
        r["drain_s"].as_f64().unwrap_or(0.0),
        r["end_to_end_per_s"].as_f64().unwrap_or(0.0),
    ));
    out.push_str(&format!(
        "keyframe -> outcome (pipeline histogram, during load)  {}\n",
        ms(&r["keyframe_latency_ms"])
    ));
    out.push_str(&format!(
        "worker handling time (pipeline histogram, during load) {}\n",
        ms(&r["keyframe_handle_ms"])
    ));
    out.push_str(&format!(
        "decisions      {}: deciding keyframe -> decision {}; -> webhook {} ({} bad signatures, {} unmatched)\n",
        r["decisions"], ms(&r["decision_ms"]), ms(&r["webhook_ms"]), r["bad_signatures"], r["unmatched_webhooks"]
    ));
    if let Some(mem) = r["memory"].as_object() {
        for (pid, m) in mem {
            out.push_str(&format!(
                "memory pid {pid}: first {} MiB, last {} MiB, peak {} MiB, growth after warm-up {} MiB over {} samples: {}\n",
                m["first_mib"], m["last_mib"], m["peak_mib"], m["growth_after_warmup_mib"], m["samples"],
                if m["flat"].as_bool() == Some(true) { "flat" } else { "NOT flat" }
            ));
        }
    }
    out
}
