//! The set on disk: `manifest.tsv` (one row per query), each query's folder of keyframes, and
//! `refs/`. Nothing here knows the names of a particular set: transformations, references and
//! the hard negative come from the manifest's columns (`source_role`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

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
