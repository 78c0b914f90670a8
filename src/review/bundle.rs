//! The evidence bundle: one zip a platform attaches to a takedown notice or a dispute answer.
//!
//! `case.json` (the case, the stream with its decisions, the reference's title, owner and
//! policy, and every evidence pair naming its two stills), the stills under `stills/`, and
//! `manifest.sha256`, the SHA-256 of every other file in `sha256sum -c` format, so a recipient
//! can tell that nothing was changed or left out. The zip carries fixed timestamps: the same
//! case gives the same bytes.

use std::io::Write as _;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;

use super::visible_case;
use crate::domain::Policy;
use crate::http::auth::Principal;
use crate::http::{ApiError, AppState};
use crate::store::cases::{Case, EvidenceRow};
use crate::store::streams::{self, StreamMatch, StreamStatus};
use crate::store::{now_ms, references, stills};

/// The name of the manifest file.
pub const MANIFEST: &str = "manifest.sha256";

#[derive(Serialize)]
struct BundleCase<'a> {
    generated_at_ms: i64,
    case: &'a Case,
    stream: Option<BundleStream>,
    reference: Option<BundleReference>,
    evidence: Vec<BundlePair>,
}

#[derive(Serialize)]
struct BundleStream {
    id: String,
    account_id: Option<String>,
    status: StreamStatus,
    viewers: Option<i64>,
    first_seen_at_ms: i64,
    matches: Vec<StreamMatch>,
}

#[derive(Serialize)]
struct BundleReference {
    id: String,
    title: String,
    rights_holder_id: Option<String>,
    policy: Policy,
}

#[derive(Serialize)]
struct BundlePair {
    #[serde(flatten)]
    row: EvidenceRow,
    stream_still: Option<String>,
    reference_still: Option<String>,
}

/// Builds the bundle of a case the caller may see.
///
/// # Errors
/// What [`visible_case`] refuses; a database error; a zip that cannot be written (internal).
pub async fn evidence_bundle(
    state: &AppState,
    principal: &Principal,
    case_id: &str,
) -> Result<Vec<u8>, ApiError> {
    let case = visible_case(state, principal, case_id).await?;
    let pool = state.store.pool();
    // A rights holder's bundle names no other holder's reference: of the stream's decisions,
    // only this case's.
    let own_only = principal.role == crate::store::keys::Role::RightsHolder;
    let stream = match streams::get(pool, &case.stream_id).await? {
        Some(s) => Some(BundleStream {
            matches: streams::matches(pool, &s.id)
                .await?
                .into_iter()
                .filter(|m| !own_only || m.reference_id == case.reference_id)
                .collect(),
            id: s.id,
            account_id: s.account_id,
            status: s.status,
            viewers: s.viewers,
            first_seen_at_ms: s.created_at,
        }),
        None => None,
    };
    let reference = references::get(pool, &case.reference_id).await?.map(|r| BundleReference {
        id: r.id,
        title: r.title,
        rights_holder_id: r.rights_holder_id,
        policy: r.policy,
    });
    // Each still once, however many pairs share it.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut evidence = Vec::with_capacity(case.evidence.len());
    for row in &case.evidence {
        let stream_name = format!("stills/stream-{}.jpg", row.stream_ts_ms);
        let reference_name = format!("stills/reference-{}.jpg", row.reference_ts_ms);
        let stream_still = if files.iter().any(|(n, _)| *n == stream_name) {
            Some(stream_name)
        } else {
            stills::stream_still(pool, &case.stream_id, row.stream_ts_ms).await?.map(|bytes| {
                files.push((stream_name.clone(), bytes));
                stream_name
            })
        };
        let reference_still = if files.iter().any(|(n, _)| *n == reference_name) {
            Some(reference_name)
        } else {
            stills::reference_still(pool, &case.reference_id, row.reference_ts_ms).await?.map(
                |bytes| {
                    files.push((reference_name.clone(), bytes));
                    reference_name
                },
            )
        };
        evidence.push(BundlePair { row: *row, stream_still, reference_still });
    }
    let json = serde_json::to_vec_pretty(&BundleCase {
        generated_at_ms: now_ms(),
        case: &case,
        stream,
        reference,
        evidence,
    })
    .map_err(|e| ApiError::Internal(e.into()))?;
    files.insert(0, ("case.json".to_owned(), json));
    write_zip(&files).map_err(ApiError::Internal)
}

/// Zips `files` in order, then the manifest of their SHA-256 digests.
fn write_zip(files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // JPEGs do not compress; JSON and the manifest do.
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut manifest = String::new();
    for (name, bytes) in files {
        let options = if name.ends_with(".jpg") { stored } else { deflated };
        zip.start_file(name.as_str(), options)?;
        zip.write_all(bytes)?;
        manifest.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))));
    }
    zip.start_file(MANIFEST, deflated)?;
    zip.write_all(manifest.as_bytes())?;
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn read(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut f = archive.by_index(i).unwrap();
                let mut out = Vec::new();
                f.read_to_end(&mut out).unwrap();
                (f.name().unwrap().into_owned(), out)
            })
            .collect()
    }

    #[test]
    fn the_manifest_lists_the_sha256_of_every_other_file() {
        let files = vec![
            ("case.json".to_owned(), br#"{"id":"c1"}"#.to_vec()),
            ("stills/stream-2000.jpg".to_owned(), vec![0xff, 0xd8, 1, 2, 3]),
            ("stills/reference-9000.jpg".to_owned(), vec![0xff, 0xd8, 4, 5]),
        ];
        let zipped = write_zip(&files).unwrap();
        let entries = read(&zipped);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["case.json", "stills/stream-2000.jpg", "stills/reference-9000.jpg", MANIFEST]
        );
        let manifest = String::from_utf8(entries[3].1.clone()).unwrap();
        assert_eq!(manifest.lines().count(), 3);
        for (name, bytes) in &entries[..3] {
            let line = format!("{}  {name}", hex::encode(Sha256::digest(bytes)));
            assert!(manifest.lines().any(|l| l == line), "{line} missing from\n{manifest}");
        }
    }

    #[test]
    fn a_changed_still_no_longer_matches_its_manifest_line() {
        let files = vec![("stills/stream-0.jpg".to_owned(), vec![1, 2, 3])];
        let entries = read(&write_zip(&files).unwrap());
        let manifest = String::from_utf8(entries[1].1.clone()).unwrap();
        let tampered = hex::encode(Sha256::digest([1u8, 2, 4]));
        assert!(!manifest.contains(&tampered));
        assert!(manifest.contains(&hex::encode(Sha256::digest([1u8, 2, 3]))));
    }

    #[test]
    fn the_same_files_give_the_same_bundle_bytes() {
        let files = vec![("case.json".to_owned(), b"{}".to_vec())];
        assert_eq!(write_zip(&files).unwrap(), write_zip(&files).unwrap());
    }
}
