//! Opening a shard: rebuilds the index from the segments in log order — from a segment's hint
//! file when it has a valid one, else by scanning its frames. A frame that fails its checks is
//! reported with file and offset; the scan then looks for the next valid frame. Bytes after the
//! last valid frame of a segment (a write torn by a crash) are cut off (`ftruncate`) and
//! reported. Nothing unchecked reaches the index, and every valid frame does. The same scan,
//! without changing anything, is [`check`] (the `percore storage check` command).
//! Must not touch: the write path (the shard starts it after this returns).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::hint::{HintWriter, decode_hint};
use super::key::IndexKey;
use super::options::KvOptions;
use super::record::{FrameError, Kind, decode_frame};
use super::shard::{Loc, Seg, hint_path};
use crate::storage::error::{Result, StorageError};
use crate::storage::file::{File, FileIo, run_blocking};

/// A problem found while opening or checking a store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Corruption {
    /// The file.
    pub path: PathBuf,
    /// Byte offset of the bad bytes.
    pub offset: u64,
    /// Bytes skipped (up to the next valid frame, or the end).
    pub skipped: u64,
    /// What was wrong.
    pub what: String,
}

/// What opening (or checking) a shard found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpenReport {
    /// Segment files.
    pub segments: usize,
    /// Segments loaded from their hint file.
    pub from_hints: usize,
    /// Segments scanned frame by frame.
    pub scanned: usize,
    /// Keys in the index afterwards.
    pub keys: usize,
    /// Frames (write batches) read.
    pub frames: u64,
    /// Bad bytes found: checksum or framing failures, skipped over.
    pub corrupt: Vec<Corruption>,
    /// Torn tails cut off: (segment, offset of the cut, bytes removed).
    pub truncated: Vec<(PathBuf, u64, u64)>,
    /// How long it took.
    pub elapsed: Duration,
}

impl OpenReport {
    /// True when nothing was corrupt (a torn tail is expected after a crash and not counted).
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
    }
}

impl std::fmt::Display for OpenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} segments ({} from hint files, {} scanned), {} frames, {} keys, {:.1} ms",
            self.segments,
            self.from_hints,
            self.scanned,
            self.frames,
            self.keys,
            self.elapsed.as_secs_f64() * 1e3
        )?;
        for (p, off, n) in &self.truncated {
            writeln!(
                f,
                "torn tail: {} cut at offset {off} ({n} bytes)",
                p.display()
            )?;
        }
        for c in &self.corrupt {
            writeln!(
                f,
                "corrupt: {} at offset {}: {} ({} bytes skipped)",
                c.path.display(),
                c.offset,
                c.what,
                c.skipped
            )?;
        }
        if self.corrupt.is_empty() {
            write!(f, "no corrupt data")?;
        }
        Ok(())
    }
}

pub(crate) struct Recovered {
    pub(crate) index: BTreeMap<IndexKey, Loc>,
    pub(crate) segs: Vec<Seg>,
    pub(crate) max_seq: u64,
    pub(crate) report: OpenReport,
}

/// Segment ids in `dir`, ascending.
pub(crate) fn segment_ids(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(hex) = name.strip_suffix(".seg")
            && hex.len() == 16
            && let Ok(id) = u64::from_str_radix(hex, 16)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// One pass over a segment's bytes: the valid frames' entries (with their offsets), the
/// problems, and where the last valid frame ends.
pub(crate) struct Scan<'a> {
    pub(crate) entries: Vec<(u64, Kind, &'a [u8], u32, u32)>,
    pub(crate) frames: u64,
    pub(crate) corrupt: Vec<(u64, u64, String)>,
    pub(crate) valid_end: u64,
}

/// Scans `buf` (a whole segment) frame by frame, skipping bad bytes to the next valid frame.
pub(crate) fn scan_segment(buf: &[u8], max_frame: usize) -> Scan<'_> {
    let mut s = Scan {
        entries: Vec::new(),
        frames: 0,
        corrupt: Vec::new(),
        valid_end: 0,
    };
    let mut at = 0usize;
    while at < buf.len() {
        match decode_frame(&buf[at..], max_frame) {
            Ok(f) => {
                for e in &f.entries {
                    s.entries
                        .push((f.seq, e.kind, e.key, (at + e.offset) as u32, e.len as u32));
                }
                s.frames += 1;
                at += f.len;
                s.valid_end = at as u64;
            }
            Err(err) => {
                // Look for the next offset where a valid frame starts.
                let next =
                    (at + 1..buf.len()).find(|&i| decode_frame(&buf[i..], max_frame).is_ok());
                let what = match err {
                    FrameError::Incomplete { .. } => "frame cut off".to_string(),
                    FrameError::Corrupt(w) => w.to_string(),
                };
                match next {
                    Some(n) => {
                        s.corrupt.push((at as u64, (n - at) as u64, what));
                        at = n;
                    }
                    None => break, // a torn tail: everything from `at` on is cut
                }
            }
        }
    }
    s
}

fn entry(kind: Kind, key: &[u8], slot: u32, off: u32, len: u32) -> LogEntry {
    let loc = match kind {
        Kind::Put => Some(Loc { slot, off, len }),
        Kind::Delete => None,
    };
    (IndexKey::from(key), loc)
}

/// One index change in log order: a put's location, or a delete.
type LogEntry = (IndexKey, Option<Loc>);

/// Builds the index from every entry in log order: a stable sort by key keeps each key's
/// entries in log order, the last one wins, deletes drop out, and the sorted survivors are
/// bulk-loaded (much faster than a million inserts in random order). Counts live bytes.
fn build_index(mut log: Vec<LogEntry>, segs: &mut [Seg]) -> BTreeMap<IndexKey, Loc> {
    log.sort_by(|a, b| a.0.cmp(&b.0));
    let mut live: Vec<(IndexKey, Loc)> = Vec::with_capacity(log.len());
    let mut it = log.into_iter().peekable();
    while let Some((k, loc)) = it.next() {
        if it.peek().is_some_and(|n| n.0 == k) {
            continue; // a later entry for the same key follows
        }
        if let Some(l) = loc {
            segs[l.slot as usize].live += l.len as u64;
            live.push((k, l));
        }
    }
    live.into_iter().collect()
}

/// Rebuilds a shard's index from `dir` (see the module docs). Torn tails are truncated.
pub(crate) async fn recover(io: &FileIo, dir: &Path, opts: &KvOptions) -> Result<Recovered> {
    let t0 = Instant::now();
    let d = dir.to_path_buf();
    let ids = run_blocking(move || segment_ids(&d))
        .await?
        .map_err(|e| StorageError::io("read_dir", dir, e))?;
    let mut report = OpenReport {
        segments: ids.len(),
        ..OpenReport::default()
    };
    let mut log: Vec<LogEntry> = Vec::new();
    let mut segs: Vec<Seg> = Vec::with_capacity(ids.len());
    let mut max_seq = 0;
    let max_frame = opts.max_segment_bytes as usize;
    for id in ids {
        let path = super::shard::seg_path(dir, id);
        let file = File::create(io, &path).await?;
        let len = file.len()?;
        if len == 0 {
            // An unused segment (opened, or prepared ahead, and never written): remove it.
            report.segments -= 1;
            let (p, h) = (path.clone(), hint_path(dir, id));
            run_blocking(move || {
                let _ = std::fs::remove_file(h);
                std::fs::remove_file(p)
            })
            .await?
            .map_err(|e| StorageError::io("remove", &path, e))?;
            continue;
        }
        let slot = segs.len() as u32;
        segs.push(Seg {
            id,
            file: file.clone(),
            path: path.clone(),
            len,
            live: 0,
            dead: Vec::new(),
            hint: None,
            sealed: true,
            settled: true,
        });
        let hp = hint_path(dir, id);
        let hbytes = run_blocking(move || std::fs::read(&hp)).await?;
        if let Ok(bytes) = hbytes {
            match decode_hint(&bytes) {
                Ok(h)
                    if h.entries
                        .iter()
                        .all(|e| e.offset as u64 + e.len as u64 <= len) =>
                {
                    for e in h.entries {
                        log.push(entry(e.kind, e.key, slot, e.offset, e.len));
                    }
                    max_seq = max_seq.max(h.max_seq);
                    report.from_hints += 1;
                    continue;
                }
                Ok(_) => report.corrupt.push(Corruption {
                    path: hint_path(dir, id),
                    offset: 0,
                    skipped: bytes.len() as u64,
                    what: "hint names entries past the segment's end; segment scanned".into(),
                }),
                Err(e) => report.corrupt.push(Corruption {
                    path: hint_path(dir, id),
                    offset: 0,
                    skipped: bytes.len() as u64,
                    what: format!("{e}; segment scanned"),
                }),
            }
        }
        // No usable hint: scan the segment.
        report.scanned += 1;
        let buf = file.read_at(vec![0; len as usize], 0).await?;
        let scan = scan_segment(&buf, max_frame);
        report.frames += scan.frames;
        let mut hint = HintWriter::new();
        for &(seq, kind, key, off, elen) in &scan.entries {
            max_seq = max_seq.max(seq);
            log.push(entry(kind, key, slot, off, elen));
            hint.push(kind, key, off, elen);
            hint.seq(seq);
        }
        for (off, skipped, what) in scan.corrupt {
            tracing::warn!(path = %path.display(), offset = off, %what, "corrupt bytes skipped");
            report.corrupt.push(Corruption {
                path: path.clone(),
                offset: off,
                skipped,
                what,
            });
        }
        if scan.valid_end < len {
            tracing::info!(
                path = %path.display(),
                offset = scan.valid_end,
                bytes = len - scan.valid_end,
                "cutting off a torn tail"
            );
            let (std_file, cut) = (file.clone(), scan.valid_end);
            run_blocking(move || std_file.std().set_len(cut))
                .await?
                .map_err(|e| StorageError::io("ftruncate", &path, e))?;
            report.truncated.push((path.clone(), cut, len - cut));
            segs[slot as usize].len = cut;
        }
        // The data is what the page cache holds; make it durable before a hint vouches for it.
        file.sync_data().await?;
        let hf = File::create(io, &hint_path(dir, id)).await?;
        let hb = hint.finish();
        let hlen = hb.len() as u64;
        hf.write_all_at(hb, 0).await?;
        hf.std()
            .set_len(hlen)
            .map_err(|e| StorageError::io("ftruncate", hf.path(), e))?;
        hf.sync_data().await?;
    }
    let index = build_index(log, &mut segs);
    report.keys = index.len();
    report.elapsed = t0.elapsed();
    Ok(Recovered {
        index,
        segs,
        max_seq,
        report,
    })
}

/// Checks every segment and hint file in `dir` without changing anything (no lock taken, no
/// truncation): the report lists corrupt bytes and torn tails with file and offset.
pub fn check(dir: &Path, opts: &KvOptions) -> Result<OpenReport> {
    let t0 = Instant::now();
    let ids = segment_ids(dir).map_err(|e| StorageError::io("read_dir", dir, e))?;
    let mut report = OpenReport {
        segments: ids.len(),
        ..OpenReport::default()
    };
    let mut keys = std::collections::BTreeSet::new();
    for id in ids {
        let path = super::shard::seg_path(dir, id);
        let buf = std::fs::read(&path).map_err(|e| StorageError::io("read", &path, e))?;
        let hp = hint_path(dir, id);
        if let Ok(h) = std::fs::read(&hp)
            && let Err(e) = decode_hint(&h)
        {
            report.corrupt.push(Corruption {
                path: hp,
                offset: 0,
                skipped: h.len() as u64,
                what: e.to_string(),
            });
        }
        report.scanned += 1;
        let scan = scan_segment(&buf, opts.max_segment_bytes as usize);
        report.frames += scan.frames;
        for &(_, kind, key, _, _) in &scan.entries {
            match kind {
                Kind::Put => keys.insert(key.to_vec()),
                Kind::Delete => keys.remove(key),
            };
        }
        for (off, skipped, what) in scan.corrupt {
            report.corrupt.push(Corruption {
                path: path.clone(),
                offset: off,
                skipped,
                what,
            });
        }
        if scan.valid_end < buf.len() as u64 {
            report.truncated.push((
                path.clone(),
                scan.valid_end,
                buf.len() as u64 - scan.valid_end,
            ));
        }
    }
    report.keys = keys.len();
    report.elapsed = t0.elapsed();
    Ok(report)
}
