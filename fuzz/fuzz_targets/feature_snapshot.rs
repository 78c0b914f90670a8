//! A feature index snapshot through `FeatureIndex::from_bytes`: whatever loads must snapshot
//! again to the same content and load back.
#![no_main]

use fingerprints::features::FeatureIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = FeatureIndex::from_bytes(data) else { return };
    let snapshot = index.to_bytes();
    // Only the order of the frames (written sorted by id) and the header's padding byte may
    // differ from the input; nothing is dropped or added.
    assert_eq!(snapshot.len(), data.len(), "the snapshot of a loaded index changed size");
    assert_eq!(snapshot[..7], data[..7], "header changed");
    let back = FeatureIndex::from_bytes(&snapshot).expect("an index's own snapshot loads");
    assert_eq!((back.frames(), back.len()), (index.frames(), index.len()));
    assert_eq!(back.to_bytes(), snapshot);
});
