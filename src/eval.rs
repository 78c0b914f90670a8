//! `offside eval DIR`: scores an evaluation set (the `eval-dev` layout) in-process.
//!
//! The set: `DIR/manifest.tsv` (one row per query), `DIR/refs/*.mp4` (the references) and
//! `DIR/<query>/<ts_ms>.jpg` (each query's keyframes). Every reference is hashed as the service
//! would on upload ([`hash_reference_file`]), every query's keyframes go through
//! [`hash_keyframe`] and a [`StreamRecognizer`] in `ts_ms` order, exactly the decision rule of
//! the worker, and the first decision is what the stream would have been flagged for.
//!
//! Nothing here knows the names of a particular set: transformations, references and the
//! hard negative come from the manifest's columns (`source_role`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::recognition::{
    KeyframeCost, Library, REFERENCE_HASHING_VERSION, RecognitionConfig, ReferenceHashOptions,
    ReferenceHashes, StreamRecognizer, Tiers, decode_feature_frames, decode_frames,
    encode_feature_frames, encode_frames, hash_keyframe_timed, hash_reference_file, lookup_timed,
};

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
        v
    }
}

/// Whether a query contains a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryKind {
    /// It re-streams `reference` and must be matched to it.
    Positive,
    /// It must never be flagged.
    Negative,
}

/// One row of `manifest.tsv` with its keyframes.
#[derive(Debug, Clone)]
pub struct Query {
    /// The query's name (its folder).
    pub name: String,
    /// Positive or negative.
    pub kind: QueryKind,
    /// The transformation applied.
    pub transform: String,
    /// The reference file a positive must be matched to.
    pub reference: Option<String>,
    /// The role of the clip the query was cut from (`unrelated-hard-negative` marks the hard
    /// negatives).
    pub source_role: String,
    /// The keyframes, `(ts_ms, path)` in time order.
    pub keyframes: Vec<(i64, PathBuf)>,
}

impl Query {
    /// A negative cut from a clip that resembles a reference on purpose.
    pub fn is_hard_negative(&self) -> bool {
        self.kind == QueryKind::Negative && self.source_role.contains("hard")
    }
}

/// Reads `DIR/manifest.tsv` and lists each query's keyframes.
///
/// # Errors
/// A missing or malformed manifest, or a query folder that cannot be read.
pub fn load_queries(dir: &Path) -> anyhow::Result<Vec<Query>> {
    let path = dir.join("manifest.tsv");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("manifest.tsv is empty")?.split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("manifest.tsv has no `{name}` column"))
    };
    let (c_query, c_kind, c_transform, c_reference) =
        (col("query")?, col("kind")?, col("transform")?, col("reference")?);
    let c_role = header.iter().position(|h| *h == "source_role");
    let mut queries = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let field = |c: usize| {
            fields.get(c).copied().with_context(|| format!("manifest.tsv line {} is short", n + 2))
        };
        let name = field(c_query)?.to_owned();
        let kind = match field(c_kind)? {
            "positive" => QueryKind::Positive,
            "negative" => QueryKind::Negative,
            other => bail!("manifest.tsv line {}: unknown kind {other:?}", n + 2),
        };
        let reference = Some(field(c_reference)?.to_owned()).filter(|r| !r.is_empty());
        if kind == QueryKind::Positive && reference.is_none() {
            bail!("manifest.tsv line {}: positive query {name} names no reference", n + 2);
        }
        let source_role = c_role.and_then(|c| fields.get(c)).unwrap_or(&"").to_string();
        let keyframes = list_keyframes(&dir.join(&name))?;
        queries.push(Query {
            name,
            kind,
            transform: field(c_transform)?.to_owned(),
            reference,
            source_role,
            keyframes,
        });
    }
    Ok(queries)
}

/// `<ts_ms>.jpg` (or .png/.webp) files of a query folder, in time order.
fn list_keyframes(dir: &Path) -> anyhow::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let ts = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<i64>().ok());
        let image = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png" | "webp")
        });
        if let (Some(ts), true) = (ts, image) {
            out.push((ts, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The reference files of a set: `DIR/refs/*` that FFmpeg may open (mp4, mkv, mov, ts, webm...).
///
/// # Errors
/// `DIR/refs` cannot be listed.
pub fn list_references(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let refs = dir.join("refs");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&refs)
        .with_context(|| format!("cannot list {}", refs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Hashes every reference (in parallel on `threads` threads) and builds the library, keyed by
/// file name (what the manifest's `reference` column holds), with the default verifier.
///
/// # Errors
/// A reference that cannot be hashed.
pub fn build_library(
    refs: &[PathBuf],
    opts: &ReferenceHashOptions,
    threads: usize,
    cache: Option<&Path>,
    on_progress: &(dyn Fn(&str, i64) + Sync),
) -> anyhow::Result<(Library, ReferenceStats)> {
    build_library_into(Library::new(), refs, opts, threads, cache, on_progress)
}

/// [`build_library`] into a given (empty) library, e.g. one with its own verifier settings.
///
/// # Errors
/// A reference that cannot be hashed.
pub fn build_library_into(
    mut library: Library,
    refs: &[PathBuf],
    opts: &ReferenceHashOptions,
    threads: usize,
    cache: Option<&Path>,
    on_progress: &(dyn Fn(&str, i64) + Sync),
) -> anyhow::Result<(Library, ReferenceStats)> {
    let started = Instant::now();
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<(usize, anyhow::Result<Hashed>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(path) = refs.get(i) else { break };
                    let name = file_name(path);
                    let result = hash_one(path, opts, cache, &|ts| on_progress(&name, ts));
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut stats = ReferenceStats::default();
    for (i, result) in results {
        let (hashes, duration_ms, cached) = result?;
        library.insert_reference(&file_name(&refs[i]), &hashes.frames, &hashes.features)?;
        stats.references += 1;
        stats.frames += hashes.frames.len();
        stats.feature_frames += hashes.features.len();
        stats.video_seconds += duration_ms as f64 / 1000.0;
        stats.cached += usize::from(cached);
    }
    stats.wall_seconds = started.elapsed().as_secs_f64();
    let sizes = library.stats();
    stats.pdq_index_bytes = sizes.index_bytes;
    stats.feature_index_bytes = sizes.feature_bytes;
    Ok((library, stats))
}

/// Sizes and timing of the reference hashing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReferenceStats {
    /// References hashed.
    pub references: usize,
    /// Frames indexed, all variants.
    pub frames: usize,
    /// Total duration of the references.
    pub video_seconds: f64,
    /// Wall-clock time of the whole hashing step.
    pub wall_seconds: f64,
    /// References read from the cache instead of hashed.
    pub cached: usize,
    /// Feature frames indexed (the geometric tier).
    pub feature_frames: usize,
    /// Heap bytes of the PDQ index.
    pub pdq_index_bytes: usize,
    /// Heap bytes of the feature index.
    pub feature_index_bytes: usize,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// One hashed reference: its frames, its duration (last frame time, ms) and whether the cache
/// served it.
type Hashed = (ReferenceHashes, i64, bool);

/// Hashes one reference, through the cache when there is one. Returns the frames, the
/// reference's duration (last frame time) and whether the cache served it.
fn hash_one(
    path: &Path,
    opts: &ReferenceHashOptions,
    cache: Option<&Path>,
    progress: &dyn Fn(i64),
) -> anyhow::Result<Hashed> {
    let cache_file = match cache {
        Some(dir) => Some(dir.join(cache_key(path, opts)?)),
        None => None,
    };
    if let Some(file) = &cache_file
        && let Ok(bytes) = std::fs::read(file)
        && let Some(hashes) = decode_cached(&bytes)
    {
        let duration = hashes.frames.iter().map(|f| f.ts_ms).max().unwrap_or(0);
        return Ok((hashes, duration, true));
    }
    let hashes = hash_reference_file(path, opts, |p| progress(p.ts_ms))?;
    if let Some(file) = &cache_file {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Write then rename, so an interrupted run never leaves a half file to be trusted.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, encode_cached(&hashes))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let duration = hashes.frames.iter().map(|f| f.ts_ms).max().unwrap_or(0);
    Ok((hashes, duration, false))
}

/// Hashing version, file name, size, modification time and every hashing option, hashed into a
/// file name: a changed reference, changed options or a new hashing version never reuse stale
/// hashes.
fn cache_key(path: &Path, opts: &ReferenceHashOptions) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(format!(
        "{REFERENCE_HASHING_VERSION}|{}|{}|{}|{opts:?}",
        file_name(path),
        meta.len(),
        modified
    ));
    Ok(format!("{}.frames", hex::encode(&h.finalize()[..16])))
}

/// A cache file: the PDQ frames' byte length (u64), the frames in the one frame form
/// ([`encode_frames`]), then the feature frames.
fn encode_cached(hashes: &ReferenceHashes) -> Vec<u8> {
    let frames = encode_frames(&hashes.frames);
    let mut out = (frames.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&frames);
    out.extend_from_slice(&encode_feature_frames(&hashes.features));
    out
}

/// Reads what [`encode_cached`] wrote; `None` (hash the reference again) for a file that is
/// torn, holds no PDQ frame, or names a crop variant this version does not know.
fn decode_cached(bytes: &[u8]) -> Option<ReferenceHashes> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let mut frames = Vec::new();
    let unknown = decode_frames(bytes.get(8..8usize.checked_add(len)?)?, &mut frames).ok()?;
    if frames.is_empty() || unknown > 0 {
        return None;
    }
    let mut features = Vec::new();
    decode_feature_frames(&bytes[8 + len..], &mut features).ok()?;
    Some(ReferenceHashes { frames, features, stills: Vec::new() })
}

/// What one choice of tiers decided for a query.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TierOutcome {
    /// The reference the stream was flagged for, if it was.
    pub flagged_as: Option<String>,
    /// Stream time (s) of the keyframe at which the decision was made.
    pub ttd_s: Option<f64>,
    /// Keyframes with at least one hit on the expected reference (positives) or on any
    /// reference (negatives).
    pub keyframes_hit: usize,
}

/// What happened to one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryOutcome {
    /// The query's name.
    pub query: String,
    /// Positive or negative.
    pub kind: QueryKind,
    /// The transformation.
    pub transform: String,
    /// The reference it should match (positives).
    pub expected: Option<String>,
    /// The reference the stream was flagged for, if it was (under the configured tiers).
    pub flagged_as: Option<String>,
    /// Stream time (s) of the keyframe at which the decision was made.
    pub ttd_s: Option<f64>,
    /// Keyframes in the query.
    pub keyframes: usize,
    /// Keyframes with at least one hit on the expected reference (positives) or on any
    /// reference (negatives).
    pub keyframes_hit: usize,
    /// Whether it is a hard negative.
    pub hard_negative: bool,
    /// The outcome under each choice of tiers (`both`, `pdq`, `features`), from the same
    /// lookups.
    pub by_tier: BTreeMap<String, TierOutcome>,
    /// Time per step over the query's keyframes.
    pub cost: KeyframeCost,
}

impl QueryOutcome {
    /// A positive flagged for its reference.
    pub fn detected(&self) -> bool {
        self.kind == QueryKind::Positive
            && self.flagged_as.is_some()
            && self.flagged_as == self.expected
    }

    /// A negative flagged, or a positive flagged for another reference.
    pub fn false_flag(&self) -> bool {
        self.flagged_as.is_some() && !self.detected()
    }

    /// This outcome as if only `tiers` had run.
    pub fn under(&self, tiers: Tiers) -> QueryOutcome {
        let t = self.by_tier.get(tiers.as_str()).cloned().unwrap_or_default();
        QueryOutcome {
            flagged_as: t.flagged_as,
            ttd_s: t.ttd_s,
            keyframes_hit: t.keyframes_hit,
            ..self.clone()
        }
    }
}

/// Every choice of tiers, in table order.
pub const ALL_TIERS: [Tiers; 3] = [Tiers::Both, Tiers::Pdq, Tiers::Features];

/// Runs one query through fresh [`StreamRecognizer`]s, one per choice of tiers, fed from the
/// same lookups, each stopping at its first decision; the configured tiers' decision is the
/// outcome's headline.
///
/// # Errors
/// A keyframe file that cannot be read. Undecodable keyframes are skipped, as the worker
/// dead-letters them.
pub fn run_query(
    library: &Library,
    cfg: &RecognitionConfig,
    query: &Query,
) -> anyhow::Result<QueryOutcome> {
    let expected = query.reference.as_deref();
    let mut runs: Vec<(Tiers, StreamRecognizer, TierOutcome)> = ALL_TIERS
        .iter()
        .map(|&t| {
            (
                t,
                StreamRecognizer::new(RecognitionConfig { tiers: t, ..cfg.clone() }),
                TierOutcome::default(),
            )
        })
        .collect();
    // Both tiers are looked up once; each choice of tiers selects its hits from them.
    let both = RecognitionConfig { tiers: Tiers::Both, ..cfg.clone() };
    let mut cost = KeyframeCost::default();
    for (ts_ms, path) in &query.keyframes {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let Some(hashes) = hash_keyframe_timed(&bytes, &mut cost) else { continue };
        let tier_hits = lookup_timed(library, &hashes, &both, None, &mut cost);
        for (tiers, recognizer, outcome) in &mut runs {
            let hits = library.keyframe_hits(&tier_hits, *tiers);
            recognizer.observe(*ts_ms, &hits);
            let hit = match expected {
                Some(r) => hits.iter().any(|h| h.reference_id == r),
                None => !hits.is_empty(),
            };
            outcome.keyframes_hit += usize::from(hit);
            if outcome.flagged_as.is_none()
                && let Some(m) = recognizer.decision()
            {
                outcome.flagged_as = Some(m.reference_id);
                outcome.ttd_s = Some(*ts_ms as f64 / 1000.0);
            }
        }
    }
    let by_tier: BTreeMap<String, TierOutcome> =
        runs.into_iter().map(|(t, _, o)| (t.as_str().to_owned(), o)).collect();
    let outcome = QueryOutcome {
        query: query.name.clone(),
        kind: query.kind,
        transform: query.transform.clone(),
        expected: query.reference.clone(),
        flagged_as: None,
        ttd_s: None,
        keyframes: query.keyframes.len(),
        keyframes_hit: 0,
        hard_negative: query.is_hard_negative(),
        by_tier,
        cost,
    };
    Ok(outcome.under(cfg.tiers))
}

/// Per-transformation scores of the positives.
#[derive(Debug, Clone, Serialize)]
pub struct TransformScore {
    /// Positive queries.
    pub queries: usize,
    /// Detected (flagged for the right reference).
    pub detected: usize,
    /// Recall, detected / queries.
    pub recall: f64,
    /// Median time to detect over the detected queries, stream seconds.
    pub ttd_median_s: Option<f64>,
    /// 90th percentile time to detect.
    pub ttd_p90_s: Option<f64>,
    /// Keyframes with a hit on the right reference / all keyframes.
    pub keyframe_hit_rate: f64,
    /// Flagged for a wrong reference.
    pub wrong_reference: usize,
}

/// The scores of one choice of tiers.
#[derive(Debug, Clone, Serialize)]
pub struct TierReport {
    /// Scores per transformation (positives).
    pub per_transform: BTreeMap<String, TransformScore>,
    /// Negatives flagged plus positives attributed to a wrong reference.
    pub false_flags: usize,
    /// Negatives flagged (hard negatives included).
    pub negatives_flagged: usize,
    /// Hard negatives flagged.
    pub hard_negatives_flagged: usize,
    /// Keyframes of negatives with any hit / all keyframes of negatives.
    pub negative_keyframe_hit_rate: f64,
    /// All positives: recall.
    pub overall_recall: f64,
    /// All detected positives: median time to detect.
    pub overall_ttd_median_s: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scores per transformation (positives), under the configured tiers.
    pub per_transform: BTreeMap<String, TransformScore>,
    /// Negatives flagged plus positives attributed to a wrong reference, hard negatives
    /// included.
    pub false_flags: usize,
    /// Negative queries.
    pub negatives: usize,
    /// Negatives flagged (hard negatives included).
    pub negatives_flagged: usize,
    /// Hard negative queries, and how many were flagged.
    pub hard_negatives: usize,
    /// Hard negatives flagged.
    pub hard_negatives_flagged: usize,
    /// Keyframes of negatives with any hit / all keyframes of negatives.
    pub negative_keyframe_hit_rate: f64,
    /// All positives: recall.
    pub overall_recall: f64,
    /// All detected positives: median time to detect.
    pub overall_ttd_median_s: Option<f64>,
    /// The tiers the fields above report (`both`, `pdq` or `features`).
    pub tiers: String,
    /// The same scores under each choice of tiers.
    pub by_tier: BTreeMap<String, TierReport>,
    /// Reference hashing figures.
    pub references: ReferenceStats,
    /// Keyframes hashed and looked up per second (one thread, decode included).
    pub keyframes_per_second: f64,
    /// Time per keyframe of each step (ms, one thread).
    pub cost_ms_per_keyframe: KeyframeCost,
    /// Every query's outcome.
    pub queries: Vec<QueryOutcome>,
}

/// Scores outcomes (reported under the tiers their headline fields hold: `tiers`).
pub fn report(
    outcomes: Vec<QueryOutcome>,
    references: ReferenceStats,
    keyframes_per_second: f64,
) -> Report {
    report_for(outcomes, references, keyframes_per_second, Tiers::Both)
}

/// [`report`] with the headline under `tiers`.
pub fn report_for(
    outcomes: Vec<QueryOutcome>,
    references: ReferenceStats,
    keyframes_per_second: f64,
    tiers: Tiers,
) -> Report {
    let by_tier: BTreeMap<String, TierReport> = ALL_TIERS
        .iter()
        .map(|&t| {
            let under: Vec<QueryOutcome> = outcomes.iter().map(|o| o.under(t)).collect();
            (t.as_str().to_owned(), score(&under))
        })
        .collect();
    let headline = score(&outcomes);
    let negatives: Vec<&QueryOutcome> =
        outcomes.iter().filter(|o| o.kind == QueryKind::Negative).collect();
    let mut cost = KeyframeCost::default();
    for o in &outcomes {
        cost.add(&o.cost);
    }
    Report {
        per_transform: headline.per_transform,
        false_flags: headline.false_flags,
        negatives: negatives.len(),
        negatives_flagged: headline.negatives_flagged,
        hard_negatives: negatives.iter().filter(|o| o.hard_negative).count(),
        hard_negatives_flagged: headline.hard_negatives_flagged,
        negative_keyframe_hit_rate: headline.negative_keyframe_hit_rate,
        overall_recall: headline.overall_recall,
        overall_ttd_median_s: headline.overall_ttd_median_s,
        tiers: tiers.as_str().to_owned(),
        by_tier,
        references,
        keyframes_per_second,
        cost_ms_per_keyframe: cost.per_keyframe(),
        queries: outcomes,
    }
}

fn score(outcomes: &[QueryOutcome]) -> TierReport {
    let mut groups: BTreeMap<String, Vec<&QueryOutcome>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.kind == QueryKind::Positive) {
        groups.entry(o.transform.clone()).or_default().push(o);
    }
    let per_transform = groups
        .into_iter()
        .map(|(t, qs)| {
            let detected: Vec<f64> =
                qs.iter().filter(|o| o.detected()).filter_map(|o| o.ttd_s).collect();
            let kf: usize = qs.iter().map(|o| o.keyframes).sum();
            let kf_hit: usize = qs.iter().map(|o| o.keyframes_hit).sum();
            let score = TransformScore {
                queries: qs.len(),
                detected: detected.len(),
                recall: ratio(detected.len(), qs.len()),
                ttd_median_s: percentile(&detected, 0.5),
                ttd_p90_s: percentile(&detected, 0.9),
                keyframe_hit_rate: ratio(kf_hit, kf),
                wrong_reference: qs.iter().filter(|o| o.false_flag()).count(),
            };
            (t, score)
        })
        .collect();
    let negatives: Vec<&QueryOutcome> =
        outcomes.iter().filter(|o| o.kind == QueryKind::Negative).collect();
    let positives: Vec<&QueryOutcome> =
        outcomes.iter().filter(|o| o.kind == QueryKind::Positive).collect();
    let all_ttd: Vec<f64> =
        positives.iter().filter(|o| o.detected()).filter_map(|o| o.ttd_s).collect();
    TierReport {
        per_transform,
        false_flags: outcomes.iter().filter(|o| o.false_flag()).count(),
        negatives_flagged: negatives.iter().filter(|o| o.flagged_as.is_some()).count(),
        hard_negatives_flagged: negatives
            .iter()
            .filter(|o| o.hard_negative && o.flagged_as.is_some())
            .count(),
        negative_keyframe_hit_rate: ratio(
            negatives.iter().map(|o| o.keyframes_hit).sum(),
            negatives.iter().map(|o| o.keyframes).sum(),
        ),
        overall_recall: ratio(all_ttd.len(), positives.len()),
        overall_ttd_median_s: percentile(&all_ttd, 0.5),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

impl Report {
    /// The human-readable tables.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let secs = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        s.push_str("| transform | queries | detected | recall | TTD median (s) | TTD p90 (s) | keyframe hit rate | wrong ref |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (t, r) in &self.per_transform {
            s.push_str(&format!(
                "| {t} | {} | {} | {:.0} % | {} | {} | {:.0} % | {} |\n",
                r.queries,
                r.detected,
                r.recall * 100.0,
                secs(r.ttd_median_s),
                secs(r.ttd_p90_s),
                r.keyframe_hit_rate * 100.0,
                r.wrong_reference
            ));
        }
        s.push_str(&format!(
            "\nAll positives: recall {:.1} %, median TTD {} s.\n",
            self.overall_recall * 100.0,
            secs(self.overall_ttd_median_s)
        ));
        s.push_str(&format!(
            "False flags: {} (negatives flagged: {} of {}; hard negatives flagged: {} of {}; positives flagged for a wrong reference: {}).\n",
            self.false_flags,
            self.negatives_flagged - self.hard_negatives_flagged,
            self.negatives - self.hard_negatives,
            self.hard_negatives_flagged,
            self.hard_negatives,
            self.false_flags - self.negatives_flagged
        ));
        s.push_str(&format!(
            "Negative keyframes with any hit: {:.1} %.\n",
            self.negative_keyframe_hit_rate * 100.0
        ));
        s.push_str(&format!("(Decisions above: tiers = {}.)\n", self.tiers));
        s.push_str(&self.tier_table());
        let r = &self.references;
        s.push_str(&format!(
            "\nReferences: {} ({:.0} s of video, {} frames indexed, {} feature frames) hashed in {:.1} s wall ({} from cache); index RAM: PDQ {:.0} B, features {:.0} B per reference second.\n",
            r.references,
            r.video_seconds,
            r.frames,
            r.feature_frames,
            r.wall_seconds,
            r.cached,
            r.pdq_index_bytes as f64 / r.video_seconds.max(1e-9),
            r.feature_index_bytes as f64 / r.video_seconds.max(1e-9),
        ));
        let c = &self.cost_ms_per_keyframe;
        s.push_str(&format!(
            "Per keyframe (ms, one thread): decode {:.2}; PDQ tier {:.2} (hash {:.2} + lookup {:.2}); geometric tier {:.2} (features {:.2} + lookup and verification {:.2}). Queries: {:.0} keyframes/s per thread.\n",
            c.decode_ms,
            c.pdq_hash_ms + c.pdq_lookup_ms,
            c.pdq_hash_ms,
            c.pdq_lookup_ms,
            c.features_extract_ms + c.features_lookup_ms,
            c.features_extract_ms,
            c.features_lookup_ms,
            self.keyframes_per_second
        ));
        s
    }

    /// Recall and median time-to-detect per transformation under each choice of tiers, and
    /// their false flags.
    pub fn tier_table(&self) -> String {
        let mut s = String::from("\n| transform |");
        for t in ALL_TIERS {
            s.push_str(&format!(" {0} recall | {0} TTD median (s) |", t.as_str()));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(2 * ALL_TIERS.len()));
        s.push('\n');
        let secs = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let transforms: Vec<&String> = self.per_transform.keys().collect();
        for name in transforms {
            s.push_str(&format!("| {name} |"));
            for t in ALL_TIERS {
                match self.by_tier.get(t.as_str()).and_then(|r| r.per_transform.get(name)) {
                    Some(r) => s.push_str(&format!(
                        " {}/{} ({:.0} %) | {} |",
                        r.detected,
                        r.queries,
                        r.recall * 100.0,
                        secs(r.ttd_median_s)
                    )),
                    None => s.push_str(" - | - |"),
                }
            }
            s.push('\n');
        }
        for (label, pick) in
            [("all positives", 0usize), ("false flags (negatives / hard / wrong ref)", 1)]
        {
            s.push_str(&format!("| {label} |"));
            for t in ALL_TIERS {
                let Some(r) = self.by_tier.get(t.as_str()) else { continue };
                if pick == 0 {
                    s.push_str(&format!(
                        " {:.1} % | {} |",
                        r.overall_recall * 100.0,
                        secs(r.overall_ttd_median_s)
                    ));
                } else {
                    s.push_str(&format!(
                        " {} ({} / {} / {}) | |",
                        r.false_flags,
                        r.negatives_flagged - r.hard_negatives_flagged,
                        r.hard_negatives_flagged,
                        r.false_flags - r.negatives_flagged
                    ));
                }
            }
            s.push('\n');
        }
        s
    }

    /// The contract JSON: `per_transform`, `false_flags`, `negatives`, plus the details
    /// (every query's outcome under `queries`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
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
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(queries.len());
    let mut by_thread: HashMap<usize, QueryOutcome> = HashMap::new();
    let next = Mutex::new(0usize);
    let results = Mutex::new(&mut by_thread);
    let first_error = Mutex::new(None::<anyhow::Error>);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(q) = queries.get(i) else { break };
                    bar.set_message(format!("query {}", q.name));
                    match run_query(&library, &cfg, q) {
                        Ok(o) => {
                            results.lock().unwrap_or_else(|e| e.into_inner()).insert(i, o);
                        }
                        Err(e) => {
                            first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        }
                    }
                    bar.inc(q.keyframes.len() as u64);
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    for i in 0..queries.len() {
        if let Some(o) = by_thread.remove(&i) {
            outcomes.push(o);
        }
    }
    let per_second =
        total_kf as f64 / started.elapsed().as_secs_f64().max(1e-9) / threads.max(1) as f64;
    bar.finish_and_clear();
    let report = report_for(outcomes, ref_stats, per_second, cfg.tiers);
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
    use crate::recognition::ReferenceFrame;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v = [4.0, 2.0, 8.0, 6.0];
        assert_eq!(percentile(&v, 0.5), Some(4.0));
        assert_eq!(percentile(&v, 0.9), Some(8.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn cached_hashes_round_trip_and_a_torn_or_empty_file_is_a_miss() {
        let mut hash = fingerprints::Hash256::default();
        hash.set_bit(7);
        let frames = vec![ReferenceFrame {
            ts_ms: 1234,
            hash,
            quality: 88,
            variant: fingerprints::CropVariant::Square,
        }];
        let hashes = ReferenceHashes { frames, ..ReferenceHashes::default() };
        let bytes = encode_cached(&hashes);
        assert_eq!(decode_cached(&bytes), Some(hashes));
        assert_eq!(decode_cached(&bytes[..20]), None);
        assert_eq!(decode_cached(&encode_cached(&ReferenceHashes::default())), None);
    }
}
