//! Storage test helpers.

use std::path::{Path, PathBuf};

/// Flips one byte in the middle of the largest segment file of the key-value shard in `dir`
/// and removes that segment's hint file (so opening scans it). Returns the segment's path.
pub fn corrupt_middle(dir: &Path) -> PathBuf {
    let seg = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&seg, b).unwrap();
    let _ = std::fs::remove_file(seg.with_extension("hint"));
    seg
}
