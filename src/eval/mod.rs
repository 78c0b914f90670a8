//! `offside eval DIR`: scores an evaluation set (the `eval-dev` layout) in-process.
//!
//! - [`set`]: the set on disk (the manifest, each query's keyframes, the reference files).
//! - [`references`]: the reference files hashed (in parallel, through a cache) into the
//!   [`Library`].
//! - [`query`]: one query through the recogniser, under each choice of tiers.
//! - [`report`]: the scores, the tables and the contract JSON.
//!
//! The set: `DIR/manifest.tsv` (one row per query), `DIR/refs/*.mp4` (the references) and
//! `DIR/<query>/<ts_ms>.jpg` (each query's keyframes). Every reference is hashed as the service
//! would on upload ([`hash_reference_file`]), every query's keyframes go through
//! [`hash_keyframe`] and a [`StreamRecognizer`] in `ts_ms` order, exactly the decision rule of
//! the worker, and the first decision is what the stream would have been flagged for.
//!
//! Nothing here knows the names of a particular set: transformations, references and the
//! hard negative come from the manifest's columns (`source_role`).

mod query;
mod references;
mod report;
mod set;

use std::io::Write as _;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

pub use query::{ALL_TIERS, JOINED_PHASES, QueryOutcome, TierOutcome, run_query};
pub use references::{ReferenceStats, build_library, build_library_into};
pub use report::{Report, TierReport, TransformScore, report, report_for};
pub use set::{Query, QueryKind, list_references, load_queries};

use crate::recognition::{Library, RecognitionConfig, ReferenceHashOptions, Tiers};

/// Arguments of `offside eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The evaluation set: manifest.tsv, refs/ and one folder of keyframes per query.
    pub dir: PathBuf,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Keep reference hashes in this folder between runs (keyed by file name, size and
    /// modification time, and the hashing options); without it every run rehashes.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Threads hashing references and running queries in parallel (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Override the lookup radius (bits), to explore the decision rule.
    #[arg(long)]
    pub radius: Option<u32>,
    /// Override the matcher's minimum counted keyframes.
    #[arg(long)]
    pub min_keyframes: Option<u32>,
    /// Override the matcher's minimum matched seconds.
    #[arg(long)]
    pub min_seconds: Option<f64>,
    /// Override the matcher's minimum score.
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Override the matcher's vote-sharing temperature (bits).
    #[arg(long)]
    pub share_temperature: Option<f32>,
    /// The tiers whose decision the headline table and the JSON contract report. The table
    /// always adds each tier alone and both together, from the same lookups.
    #[arg(long, value_enum, default_value_t = Tiers::Both)]
    pub tiers: Tiers,
    /// Override the geometric tier's minimum summed inlier weight (its acceptance threshold).
    #[arg(long)]
    pub min_inlier_weight: Option<f32>,
    /// Override the geometric tier's minimum number of inliers.
    #[arg(long)]
    pub min_inliers: Option<usize>,
    /// Override how far apart (ms) two moments of a reference must be to compete in the
    /// geometric tier's ratio test across time.
    #[arg(long)]
    pub distinct_ms: Option<i64>,
    /// Override how much better (ratio of inlier weights) a verified frame must fit than
    /// every other moment of its reference.
    #[arg(long)]
    pub distinct_ratio: Option<f32>,
    /// Override the inlier weight above which the geometric tier accepts inliers covering
    /// less of the frame.
    #[arg(long)]
    pub dense_weight: Option<f32>,
    /// Override how far from a similarity the geometric tier's perspective model may go
    /// (largest over smallest local scale); 1 verifies with similarities only.
    #[arg(long)]
    pub max_perspective: Option<f32>,
    /// Override the geometric tier's cap on full buckets: a bucket holding more than this many
    /// features (and more than `--max-bucket-ratio` times the mean) is skipped.
    #[arg(long)]
    pub min_bucket_cap: Option<usize>,
    /// Override the geometric tier's cap on full buckets as a multiple of the mean bucket.
    #[arg(long)]
    pub max_bucket_ratio: Option<f32>,
    /// Override the geometric tier's schedule: at most this much stream time (ms) between two
    /// geometric lookups on a stream without recent evidence; 0 looks at every keyframe.
    #[arg(long)]
    pub quiet_interval_ms: Option<i64>,
    /// Override the geometric tier's schedule: every keyframe up to this much stream time (ms)
    /// after a hit is looked at.
    #[arg(long)]
    pub evidence_window_ms: Option<i64>,
}

impl EvalArgs {
    /// The default rule with this run's overrides applied.
    pub fn recognition_config(&self) -> RecognitionConfig {
        let mut cfg = RecognitionConfig::default();
        if let Some(r) = self.radius {
            cfg.radius = r;
            cfg.matcher.max_distance = r;
        }
        if let Some(v) = self.min_keyframes {
            cfg.matcher.min_keyframes = v;
        }
        if let Some(v) = self.min_seconds {
            cfg.matcher.min_matched_seconds = v;
        }
        if let Some(v) = self.min_score {
            cfg.matcher.min_score = v;
        }
        if let Some(v) = self.share_temperature {
            cfg.matcher.share_temperature = v;
        }
        if let Some(v) = self.quiet_interval_ms {
            cfg.schedule.quiet_interval_ms = v;
        }
        if let Some(v) = self.evidence_window_ms {
            cfg.schedule.evidence_window_ms = v;
        }
        cfg.tiers = self.tiers;
        cfg
    }

    /// The geometric tier's acceptance with this run's overrides applied.
    pub fn verify_config(&self) -> fingerprints::features::VerifyConfig {
        let mut v = fingerprints::features::VerifyConfig::default();
        if let Some(w) = self.min_inlier_weight {
            v.min_inlier_weight = w;
        }
        if let Some(n) = self.min_inliers {
            v.min_inliers = n;
        }
        if let Some(ms) = self.distinct_ms {
            v.distinct_ms = ms;
        }
        if let Some(r) = self.distinct_ratio {
            v.min_distinct_ratio = r;
        }
        if let Some(w) = self.dense_weight {
            v.dense_weight = w;
        }
        if let Some(p) = self.max_perspective {
            v.max_perspective = p;
        }
        if let Some(c) = self.min_bucket_cap {
            v.min_bucket_cap = c;
        }
        if let Some(r) = self.max_bucket_ratio {
            v.max_bucket_ratio = r;
        }
        v
    }
}

/// `f` over `items` on a pool of `threads` threads (work-stealing: queries and references
/// differ a lot in length), the results in the order of `items`.
///
/// # Errors
/// The threads could not be started.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync + Send,
) -> anyhow::Result<Vec<R>> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
    Ok(pool.install(|| items.par_iter().map(f).collect()))
}

/// Runs `offside eval`.
///
/// # Errors
/// An unreadable set or reference.
pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let queries = load_queries(&args.dir)?;
    let refs = list_references(&args.dir)?;
    anyhow::ensure!(!refs.is_empty(), "{} has no references", args.dir.join("refs").display());
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let opts = ReferenceHashOptions::default();

    let total_kf: u64 = queries.iter().map(|q| q.keyframes.len() as u64).sum();
    let bar = ProgressBar::new(refs.len() as u64 + total_kf);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("hashing references");
    let progress = |name: &str, ts: i64| {
        bar.set_message(format!("hashing {name} at {:.0} s", ts as f64 / 1000.0))
    };
    let (library, ref_stats) = build_library_into(
        Library::with_verify_config(args.verify_config()),
        &refs,
        &opts,
        threads,
        args.cache.as_deref(),
        &progress,
    )?;
    bar.inc(refs.len() as u64);

    let missing: Vec<&str> = queries
        .iter()
        .filter_map(|q| q.reference.as_deref())
        .filter(|r| !library.contains(r))
        .collect();
    anyhow::ensure!(missing.is_empty(), "the manifest names references not in refs/: {missing:?}");

    let cfg = args.recognition_config();
    let outcomes = parallel_map(&queries, threads, |q| {
        bar.set_message(format!("query {}", q.name));
        let outcome = run_query(&library, &cfg, q);
        bar.inc(q.keyframes.len() as u64);
        outcome
    })?
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    let report = report_for(outcomes, ref_stats, &cfg);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report.to_json())?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        eval: EvalArgs,
    }

    #[test]
    fn the_geometric_tiers_overrides_reach_its_config_and_the_rest_keeps_the_defaults() {
        let args = Cli::parse_from([
            "eval",
            "set",
            "--min-bucket-cap",
            "48",
            "--max-bucket-ratio",
            "6",
            "--distinct-ratio",
            "1.3",
        ])
        .eval;
        let v = args.verify_config();
        let default = fingerprints::features::VerifyConfig::default();
        assert_eq!((v.min_bucket_cap, v.max_bucket_ratio, v.min_distinct_ratio), (48, 6.0, 1.3));
        assert_eq!(
            (v.min_inliers, v.max_perspective),
            (default.min_inliers, default.max_perspective)
        );
        let none = Cli::parse_from(["eval", "set"]).eval.verify_config();
        assert_eq!(none.min_bucket_cap, default.min_bucket_cap);
        assert_eq!(none.max_bucket_ratio, default.max_bucket_ratio);
    }
}
