//! [`BlockStore`]: fixed-size blocks on a file or a block device, read and written in whole,
//! sector-aligned block ranges with direct I/O where the filesystem allows it (the alignment
//! comes from `statx`), every access bounds-checked: a block past the end is
//! [`StorageError::OutOfRange`], a buffer that is not a whole number of blocks is
//! [`StorageError::Config`]. Nothing is cached; [`sync`](BlockStore::sync) makes written blocks
//! durable. Must not touch: record formats (the key-value store), sockets.

use std::path::{Path, PathBuf};

use super::error::{Result, StorageError};
use super::file::{AlignedBuf, File, FileBuf, FileIo};

/// Fixed-size blocks on a file or block device.
#[derive(Debug, Clone)]
pub struct BlockStore {
    file: File,
    path: PathBuf,
    block_size: u32,
    blocks: u64,
}

impl BlockStore {
    /// Opens `path` as `blocks` blocks of `block_size` bytes. A regular file is created and
    /// sized to `blocks × block_size` if it is smaller; a block device must already hold that
    /// many (`blocks: None` takes what the file or device holds). `block_size` must be a power
    /// of two, at least 512 and a multiple of the direct-I/O alignment.
    pub async fn open(
        io: &FileIo,
        path: &Path,
        block_size: u32,
        blocks: Option<u64>,
    ) -> Result<BlockStore> {
        if !block_size.is_power_of_two() || block_size < 512 {
            return Err(StorageError::Config {
                name: "block_size",
                value: block_size.to_string(),
                why: "must be a power of two and at least 512",
            });
        }
        let file = File::open_direct(io, path).await?;
        if let Some(a) = file.direct()
            && !block_size.is_multiple_of(a.offset.max(a.mem))
        {
            return Err(StorageError::Config {
                name: "block_size",
                value: block_size.to_string(),
                why: "must be a multiple of the device's direct-I/O alignment",
            });
        }
        let size = device_or_file_size(&file)?;
        let is_file = file.std().metadata().map(|m| m.is_file()).unwrap_or(false);
        let blocks = match blocks {
            None => size / block_size as u64,
            Some(n) => {
                let want = n
                    .checked_mul(block_size as u64)
                    .ok_or(StorageError::OutOfRange {
                        what: format!("{n} blocks of {block_size} bytes"),
                        limit: u64::MAX,
                    })?;
                if size < want {
                    if !is_file {
                        return Err(StorageError::OutOfRange {
                            what: format!("{n} blocks of {block_size} bytes"),
                            limit: size,
                        });
                    }
                    file.allocate(0, 0, want).await?;
                }
                n
            }
        };
        Ok(BlockStore {
            path: path.to_path_buf(),
            file,
            block_size,
            blocks,
        })
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// True when opened with direct I/O (else buffered, where the filesystem refused it).
    pub fn is_direct(&self) -> bool {
        self.file.direct().is_some()
    }

    /// A zeroed buffer for `count` blocks, aligned for this store.
    pub fn buffer(&self, count: u32) -> Result<AlignedBuf> {
        self.file
            .aligned_buf(count as usize * self.block_size as usize)
    }

    fn check(&self, first: u64, count: u64) -> Result<()> {
        match first.checked_add(count) {
            Some(end) if end <= self.blocks => Ok(()),
            _ => Err(StorageError::OutOfRange {
                what: format!("blocks {first}..{}", first.saturating_add(count)),
                limit: self.blocks,
            }),
        }
    }

    /// Reads `count` blocks from block `first`.
    pub async fn read(&self, first: u64, count: u32) -> Result<AlignedBuf> {
        self.check(first, count as u64)?;
        let buf = self.buffer(count)?;
        let off = first * self.block_size as u64;
        match self.file.read_buf_at(FileBuf::Aligned(buf), off).await? {
            FileBuf::Aligned(b) if b.len() == count as usize * self.block_size as usize => Ok(b),
            b => Err(StorageError::Corrupt {
                path: self.path.clone(),
                offset: off,
                what: format!("short read: {} bytes", b.len()),
            }),
        }
    }

    /// Writes `data` (a whole number of blocks, from [`buffer`](Self::buffer)) at block
    /// `first`; returns the buffer for reuse.
    pub async fn write(&self, first: u64, data: AlignedBuf) -> Result<AlignedBuf> {
        let bs = self.block_size as usize;
        if !data.len().is_multiple_of(bs) {
            return Err(StorageError::Config {
                name: "buffer",
                value: data.len().to_string(),
                why: "a block write needs a whole number of blocks",
            });
        }
        self.check(first, (data.len() / bs) as u64)?;
        let data = if self.is_direct() && data.align() < self.required_align() {
            // An AlignedBuf from elsewhere with a weaker alignment: copy into one that fits.
            let mut b = self.buffer((data.len() / bs) as u32)?;
            b.copy_from_slice(&data);
            b
        } else {
            data
        };
        match self
            .file
            .write_buf_at(FileBuf::Aligned(data), first * bs as u64)
            .await?
        {
            FileBuf::Aligned(b) => Ok(b),
            FileBuf::Vec(_) => unreachable!("a write returns the buffer it was given"),
        }
    }

    fn required_align(&self) -> usize {
        self.file
            .direct()
            .map_or(1, |a| a.mem.max(a.offset) as usize)
    }

    /// Makes every written block durable (`fdatasync`).
    pub async fn sync(&self) -> Result<()> {
        self.file.sync_data().await
    }
}

/// The size of a regular file, or of a block device (seek to its end).
fn device_or_file_size(f: &File) -> Result<u64> {
    let meta = f
        .std()
        .metadata()
        .map_err(|e| StorageError::io("fstat", f.path(), e))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    rustix::fs::seek(f.std(), rustix::fs::SeekFrom::End(0))
        .map_err(|e| StorageError::io("seek", f.path(), e.into()))
}
