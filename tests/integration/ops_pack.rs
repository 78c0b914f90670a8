//! The ops pack (`ops/`): the Grafana dashboard parses and every query of it, and of the
//! Prometheus alert rules, names only metrics the service exports (`telemetry::METRICS`), with
//! their labels, and uses `_bucket`/`_sum`/`_count` only on histograms. `promtool check rules`
//! checks the rules' syntax in `scripts/test`.

use std::path::Path;

use offside::telemetry::{METRICS, MetricInfo, MetricKind};
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

/// The catalogued metric a series name belongs to (a histogram's `_bucket`, `_sum`, `_count`).
fn metric_of(series: &str) -> Result<(&'static MetricInfo, bool), String> {
    if let Some(m) = METRICS.iter().find(|m| m.name == series) {
        return Ok((m, false));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && let Some(m) = METRICS.iter().find(|m| m.name == base)
        {
            if m.kind != MetricKind::Histogram {
                return Err(format!("{series}: {base} is not a histogram"));
            }
            return Ok((m, suffix == "_bucket"));
        }
    }
    Err(format!("{series} is not a metric the service exports"))
}

/// Checks every `offside_*` series named in `expr`, and the label names of its selector.
fn check_expr(expr: &str) -> Result<usize, String> {
    let mut found = 0;
    let mut rest = expr;
    while let Some(at) = rest.find("offside_") {
        let after = &rest[at..];
        let end =
            after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let (series, tail) = after.split_at(end);
        let (metric, bucket) = metric_of(series)?;
        if let Some(selector) = tail.strip_prefix('{') {
            let selector = selector.split('}').next().unwrap_or_default();
            for matcher in selector.split(',').filter(|m| !m.trim().is_empty()) {
                let label = matcher.split(['=', '!', '~']).next().unwrap_or_default().trim();
                if !(metric.labels.contains(&label) || (bucket && label == "le")) {
                    return Err(format!("{series} has no label {label:?} (in {expr})"));
                }
            }
        }
        if metric.kind == MetricKind::Histogram && !bucket && series == metric.name {
            return Err(format!("{series} is a histogram: query its _bucket, _sum or _count"));
        }
        found += 1;
        rest = &after[end..];
    }
    Ok(found)
}

#[test]
fn the_dashboard_parses_and_queries_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(&read("ops/grafana/offside.json"))
        .expect("ops/grafana/offside.json is JSON");
    assert_eq!(dashboard["uid"], "offside");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title:?} has no query"));
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title:?}: no expr"));
            let n = check_expr(expr).unwrap_or_else(|e| panic!("panel {title:?}: {e}"));
            assert!(n > 0, "panel {title:?} queries no Offside metric: {expr}");
            queried += 1;
        }
    }
    assert!(queried >= 10, "{queried} queries");
}

#[test]
fn the_alert_rules_use_only_exported_metrics_and_cover_the_issue() {
    let rules = read("ops/prometheus/alerts.yml");
    // Every `expr:` (inline or a `|` block of indented lines) checked.
    let mut exprs: Vec<String> = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else { continue };
        let indent = line.len() - line.trim_start().len();
        let mut expr = value.trim().trim_start_matches('|').to_owned();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr);
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        check_expr(expr).unwrap_or_else(|e| panic!("alert rule: {e}"));
    }
    // What the issue asks the alerts to watch.
    for needed in [
        "offside_keyframe_latency_seconds_bucket",
        "offside_keyframe_queue_depth",
        "offside_keyframe_queue_oldest_age_seconds",
        "offside_keyframes_dead_lettered_total",
        "offside_webhook_deliveries_total",
        "offside_webhook_oldest_pending_age_seconds",
        "offside_live_feeds",
        "offside_reference_jobs_total",
    ] {
        assert!(exprs.iter().any(|e| e.contains(needed)), "no alert on {needed}");
    }
}

#[test]
fn the_checker_refuses_what_it_should() {
    assert!(check_expr("rate(offside_nonexistent_total[5m])").is_err());
    assert!(check_expr("offside_keyframe_latency_seconds").is_err(), "a bare histogram");
    assert!(check_expr("offside_keyframes_total_bucket").is_err(), "bucket of a counter");
    assert!(check_expr("offside_keyframes_total{route=\"x\"}").is_err(), "unknown label");
    assert_eq!(
        check_expr("sum by (le) (rate(offside_keyframe_latency_seconds_bucket{le=\"1\"}[5m]))"),
        Ok(1)
    );
}
