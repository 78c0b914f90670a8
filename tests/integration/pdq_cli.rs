//! `offside hash IMAGE` gives Meta's reference PDQ hash bit for bit (issue #17: hash lists
//! exchanged with other PDQ systems agree exactly), on every image of the committed vector
//! sets (`fingerprints/tests/data/pdq`) and, when `PDQ_VECTORS_DIR` names it, the shared set.

use std::path::{Path, PathBuf};
use std::process::Command;

fn check_dir(dir: &Path, json: &str) -> (usize, Vec<String>) {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(json)).expect("vector file")).unwrap();
    let mut checked = 0;
    let mut differing = Vec::new();
    for v in doc["vectors"].as_array().unwrap() {
        let Some(file) = v["file"].as_str() else { continue };
        let out = Command::new(env!("CARGO_BIN_EXE_offside"))
            .args(["hash", "--json"])
            .arg(dir.join(file))
            .output()
            .expect("offside runs");
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if got["hash"] != v["pdq"] || got["quality"] != v["quality"] {
            differing.push(format!(
                "{file}: {} q{} vs {} q{}",
                got["hash"], got["quality"], v["pdq"], v["quality"]
            ));
        }
        checked += 1;
    }
    (checked, differing)
}

#[test]
fn offside_hash_gives_the_reference_pdq_hash_of_every_vector_image() {
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fingerprints/tests/data/pdq");
    let mut sets = vec![(committed.clone(), "vectors.json"), (committed, "generated.json")];
    if let Some(dir) = std::env::var_os("PDQ_VECTORS_DIR") {
        sets.push((PathBuf::from(dir), "vectors.json"));
    }
    let mut total = 0;
    for (dir, json) in sets {
        let (checked, differing) = check_dir(&dir, json);
        assert!(differing.is_empty(), "{json} in {}:\n{}", dir.display(), differing.join("\n"));
        total += checked;
    }
    assert!(total >= 60, "only {total} images checked");
}
