//! Reading the processes' `/metrics`: counters and histograms from the Prometheus text
//! exposition, summed over every process, and quantiles as Prometheus computes them.

/// Keyframes the workers have finished (`offside_keyframes_total`, every process), to set
/// against the keyframes published: every outcome but `ended`, which counts the stream-end
/// messages handled (the load ends each killed pirate stream, so counting those would end the
/// drain while keyframes are still queued).
pub(super) fn processed(exposition: &str) -> f64 {
    // `+ 0.0`: a sum of nothing is -0.0 for floats, which would print as "-0".
    samples(exposition, "offside_keyframes_total")
        .filter(|(labels, _)| !labels.contains("outcome=\"ended\""))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0
}

/// The samples of one metric in a Prometheus text exposition: (labels, value).
fn samples<'a>(exposition: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    exposition.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.split_whitespace().next()?.parse::<f64>().ok()?))
    })
}

/// A histogram's cumulative buckets `(le, count)`, summed by `le` over every series and process
/// (as `sum by (le)`), in increasing `le` (`+Inf` last).
pub(super) fn histogram_buckets(exposition: &str, name: &str) -> Vec<(f64, f64)> {
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for (labels, value) in samples(exposition, &format!("{name}_bucket")) {
        let Some(le) = labels.split(',').find_map(|l| l.trim().strip_prefix("le=\"")) else {
            continue;
        };
        let Ok(le) = le.trim_end_matches('"').parse::<f64>() else { continue };
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += value,
            None => by_le.push((le, value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// Bucket counts gained between two scrapes (`before` may lack buckets: a process that had
/// recorded nothing yet).
pub(super) fn bucket_growth(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let earlier = before.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, m)| *m);
            (le, (n - earlier).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, as Prometheus's `histogram_quantile`: linear
/// interpolation inside the bucket that holds the rank; the highest finite bound when the
/// rank falls in `+Inf`. `None` without observations.
pub(super) fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "# HELP offside_keyframes_total x\n# TYPE offside_keyframes_total counter\n\
offside_keyframes_total{outcome=\"no_match\"} 90\n\
offside_keyframes_total{outcome=\"decided\"} 10\n\
offside_keyframes_total{outcome=\"ended\"} 7\n\
offside_keyframe_latency_seconds_bucket{le=\"0.01\"} 50\n\
offside_keyframe_latency_seconds_bucket{le=\"0.02\"} 90\n\
offside_keyframe_latency_seconds_bucket{le=\"+Inf\"} 100\n\
offside_keyframe_latency_seconds_sum 1.5\n\
offside_keyframe_latency_seconds_count 100\n";

    #[test]
    fn counters_and_buckets_add_up_over_every_process() {
        let two = format!("{ONE}\n{}", ONE.replace(" 90\n", " 10\n"));
        // Keyframes only: the 7 stream ends handled are not keyframes published.
        assert_eq!(processed(ONE), 100.0);
        // The second process: 10 no_match, and 10 keyframes in its 0.02 bucket.
        assert_eq!(processed(&two), 120.0);
        let buckets = histogram_buckets(&two, "offside_keyframe_latency_seconds");
        assert_eq!(buckets, vec![(0.01, 100.0), (0.02, 100.0), (f64::INFINITY, 200.0)]);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_like_prometheus() {
        let buckets = histogram_buckets(ONE, "offside_keyframe_latency_seconds");
        // Rank 50 of 100 is the top of the first bucket; rank 70 is half way into the second.
        assert!((histogram_quantile(0.5, &buckets).unwrap() - 0.01).abs() < 1e-12);
        assert!((histogram_quantile(0.7, &buckets).unwrap() - 0.015).abs() < 1e-12);
        // Past the last finite bound: that bound.
        assert_eq!(histogram_quantile(0.99, &buckets), Some(0.02));
        assert_eq!(histogram_quantile(0.5, &[]), None);
        assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn only_what_the_load_added_counts() {
        let before = vec![(0.01, 40.0), (0.02, 40.0), (f64::INFINITY, 40.0)];
        let after = vec![(0.01, 40.0), (0.02, 60.0), (f64::INFINITY, 60.0)];
        let grown = bucket_growth(&after, &before);
        assert_eq!(grown, vec![(0.01, 0.0), (0.02, 20.0), (f64::INFINITY, 20.0)]);
        assert!((histogram_quantile(0.5, &grown).unwrap() - 0.015).abs() < 1e-12);
        // A process that had recorded nothing before the load: all of it counts.
        assert_eq!(bucket_growth(&after, &[]), after);
    }
}
