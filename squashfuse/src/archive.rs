//! One opened squashfs partition: positioned reads of the image (pread, no seek state),
//! metadata blocks and data/fragment blocks through bounded caches, and the small lookup
//! tables (ids, fragments, export) that map indices to positions.
//!
//! Invariants: every position read is checked against `bytes_used` before the read, every
//! buffer is sized from a checked bound (8 KiB for metadata, the validated block size for
//! data), and a block is decompressed at most once while it stays cached.

use crate::cache::Lru;
use crate::compress::Decoder;
use crate::error::{Result, SqfsError};
use crate::shared_cache::{ImageKey, SharedCache};
use crate::superblock::{Superblock, SIZE as SUPERBLOCK_SIZE};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Decompressed size of a metadata block.
pub const META_SIZE: usize = 8192;
/// Decompressed metadata blocks kept (8 KiB each): inodes and directories of a start.
const META_CACHE: usize = 1024;
/// Decompressed data and fragment blocks kept: 64 blocks of at most 128 KiB by default.
const DATA_CACHE_BYTES: usize = 8 << 20;
/// Bit of an on-disk data block size meaning "stored uncompressed".
pub const UNCOMPRESSED_BLOCK: u32 = 1 << 24;

/// A decompressed metadata block and where the next one starts.
pub struct MetaBlock {
    pub data: Vec<u8>,
    pub next: u64,
}

/// How many blocks were decompressed, for tests and the stats line.
#[derive(Default)]
pub struct Counters {
    pub meta: AtomicU64,
    pub data: AtomicU64,
}

/// An opened squashfs partition.
pub struct Archive {
    file: File,
    base: u64,
    pub sb: Superblock,
    decoder: Decoder,
    meta: Mutex<Lru<MetaBlock>>,
    data: Mutex<Lru<Vec<u8>>>,
    ids: Vec<u32>,
    fragment_index: OnceLock<Vec<u64>>,
    export_index: OnceLock<Vec<u64>>,
    pub counters: Counters,
    /// Decompressed file data shared with other servers of this image (see shared_cache).
    pub shared: Option<SharedCache>,
}

/// Why an image cannot be served by this server.
pub enum OpenError {
    /// A compressor this server does not decode; another server may.
    Unsupported(crate::superblock::Compressor),
    Bad(SqfsError),
}

impl From<SqfsError> for OpenError {
    fn from(e: SqfsError) -> Self {
        OpenError::Bad(e)
    }
}

impl Archive {
    /// Reads the superblock at `base` and the id table; nothing else is read up front, so
    /// opening costs the same for any image size.
    pub fn open(file: File, base: u64) -> std::result::Result<Archive, OpenError> {
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        file.read_exact_at(&mut raw, base).map_err(SqfsError::Io)?;
        let sb = Superblock::parse(&raw)?;
        // Every bound below is checked against `bytes_used`, so it must not claim more than
        // the file holds.
        let len = file.metadata().map_err(SqfsError::Io)?.len();
        if base.checked_add(sb.bytes_used).is_none_or(|end| end > len) {
            return Err(
                SqfsError::Corrupt("the superblock claims more bytes than the file has").into(),
            );
        }
        let decoder = Decoder::new(sb.compressor).ok_or(OpenError::Unsupported(sb.compressor))?;
        let data_blocks = DATA_CACHE_BYTES / sb.block_size as usize;
        let mut archive = Archive {
            file,
            base,
            sb,
            decoder,
            meta: Mutex::new(Lru::new(META_CACHE)),
            data: Mutex::new(Lru::new(data_blocks.max(8))),
            ids: Vec::new(),
            fragment_index: OnceLock::new(),
            export_index: OnceLock::new(),
            counters: Counters::default(),
            shared: None,
        };
        archive.ids = archive.read_ids()?;
        Ok(archive)
    }

    /// What names this image's bytes in the shared cache.
    pub fn key(&self) -> Option<ImageKey> {
        ImageKey::of(&self.file, self.base, self.sb.bytes_used, self.sb.mkfs_time)
    }

    /// Reads `buf.len()` bytes at `pos` (relative to the partition), refusing anything past
    /// the end the superblock declares.
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let end = pos
            .checked_add(buf.len() as u64)
            .ok_or(SqfsError::Corrupt("position overflows"))?;
        if end > self.sb.bytes_used {
            return Err(SqfsError::Corrupt(
                "a reference points past the end of the image",
            ));
        }
        let at = self
            .base
            .checked_add(pos)
            .ok_or(SqfsError::Corrupt("position overflows"))?;
        self.file.read_exact_at(buf, at)?;
        Ok(())
    }

    fn read_u64_at(&self, pos: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_at(pos, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The metadata block starting at `pos`, from the cache or decompressed once.
    pub fn meta_block(&self, pos: u64) -> Result<Arc<MetaBlock>> {
        if let Some(b) = lock(&self.meta).get(pos) {
            return Ok(b);
        }
        let mut header = [0u8; 2];
        self.read_at(pos, &mut header)?;
        let header = u16::from_le_bytes(header);
        let size = usize::from(header & 0x7fff);
        if size == 0 || size > META_SIZE {
            return Err(SqfsError::Corrupt("metadata block size out of range"));
        }
        let mut raw = vec![0u8; size];
        self.read_at(pos + 2, &mut raw)?;
        let data = if header & 0x8000 != 0 {
            raw
        } else {
            self.counters.meta.fetch_add(1, Ordering::Relaxed);
            self.decoder.decompress(&raw, META_SIZE, "metadata")?
        };
        let block = Arc::new(MetaBlock {
            data,
            next: pos + 2 + size as u64,
        });
        lock(&self.meta).insert(pos, Arc::clone(&block));
        Ok(block)
    }

    /// A data or fragment block at `pos` whose on-disk size word is `disk`; the result may
    /// be shorter than a full block (the last block of a file).
    pub fn data_block(&self, pos: u64, disk: u32) -> Result<Arc<Vec<u8>>> {
        if let Some(b) = lock(&self.data).get(pos) {
            return Ok(b);
        }
        let size = (disk & !UNCOMPRESSED_BLOCK) as usize;
        let block_size = self.sb.block_size as usize;
        if size == 0 || size > block_size {
            return Err(SqfsError::Corrupt("data block size out of range"));
        }
        let mut raw = vec![0u8; size];
        self.read_at(pos, &mut raw)?;
        let data = if disk & UNCOMPRESSED_BLOCK != 0 {
            raw
        } else {
            self.decompress_data(&raw)?
        };
        let block = Arc::new(data);
        lock(&self.data).insert(pos, Arc::clone(&block));
        Ok(block)
    }

    // Kept out of line so a uprobe can count data-block decompressions per start.
    #[inline(never)]
    fn decompress_data(&self, raw: &[u8]) -> Result<Vec<u8>> {
        self.counters.data.fetch_add(1, Ordering::Relaxed);
        self.decoder
            .decompress(raw, self.sb.block_size as usize, "data")
    }

    /// A reader positioned at a metadata reference (`block << 16 | offset`) into `table`.
    pub fn reader_at_ref(&self, table: u64, reference: u64) -> Result<MetaReader<'_>> {
        let block = table
            .checked_add(reference >> 16)
            .ok_or(SqfsError::Corrupt("reference overflows"))?;
        Ok(self.reader(block, (reference & 0xffff) as usize))
    }

    /// A reader at byte `offset` of the metadata block at `block`.
    pub fn reader(&self, block: u64, offset: usize) -> MetaReader<'_> {
        MetaReader {
            archive: self,
            block,
            offset,
            current: None,
        }
    }

    fn read_ids(&self) -> Result<Vec<u32>> {
        let count = usize::from(self.sb.id_count);
        if count == 0 {
            return Err(SqfsError::Corrupt("the id table is empty"));
        }
        // The ids fill consecutive metadata blocks; the first pointer locates them all.
        let first = self.read_u64_at(self.sb.id_table)?;
        let mut r = self.reader(first, 0);
        (0..count).map(|_| r.u32()).collect()
    }

    /// The uid or gid stored at `index` of the id table.
    pub fn id(&self, index: u16) -> Result<u32> {
        self.ids
            .get(usize::from(index))
            .copied()
            .ok_or(SqfsError::Corrupt("id index out of range"))
    }

    /// Position and on-disk size word of fragment block `index`.
    pub fn fragment(&self, index: u32) -> Result<(u64, u32)> {
        if index >= self.sb.fragment_count {
            return Err(SqfsError::Corrupt("fragment index out of range"));
        }
        let table = index_table(&self.fragment_index, || {
            self.read_index(
                self.sb.fragment_table,
                u64::from(self.sb.fragment_count),
                16,
            )
        })?;
        let block = *table
            .get(index as usize / 512)
            .ok_or(SqfsError::Corrupt("fragment table too short"))?;
        let mut r = self.reader(block, (index as usize % 512) * 16);
        Ok((r.u64()?, r.u32()?))
    }

    /// The inode reference of inode number `number` (1-based), when the image exports them.
    pub fn inode_ref_of(&self, number: u32) -> Result<u64> {
        if !self.sb.has_export_table() || number == 0 || number > self.sb.inode_count {
            return Err(SqfsError::Corrupt("inode number not in the export table"));
        }
        let table = index_table(&self.export_index, || {
            self.read_index(self.sb.export_table, u64::from(self.sb.inode_count), 8)
        })?;
        let i = (number - 1) as usize;
        let block = *table
            .get(i / 1024)
            .ok_or(SqfsError::Corrupt("export table too short"))?;
        self.reader(block, (i % 1024) * 8).u64()
    }

    /// The pointers to the metadata blocks of a table of `count` entries of `entry` bytes.
    pub fn read_index(&self, at: u64, count: u64, entry: u64) -> Result<Vec<u64>> {
        let bytes = count
            .checked_mul(entry)
            .ok_or(SqfsError::Corrupt("table size overflows"))?;
        // Every entry occupies image bytes, so the count cannot exceed the image size: this
        // bounds the allocation below by the image, not by a field.
        if bytes > self.sb.bytes_used {
            return Err(SqfsError::Corrupt("table larger than the image"));
        }
        let blocks = bytes.div_ceil(META_SIZE as u64) as usize;
        let mut raw = vec![0u8; blocks * 8];
        self.read_at(at, &mut raw)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }
}

fn index_table(
    cell: &OnceLock<Vec<u64>>,
    load: impl FnOnce() -> Result<Vec<u64>>,
) -> Result<&Vec<u64>> {
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    let t = load()?;
    Ok(cell.get_or_init(|| t))
}

/// A poisoned cache lock only means another request panicked mid-update of an LRU that is
/// consistent after every call; keep using it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sequential reads through consecutive metadata blocks.
pub struct MetaReader<'a> {
    archive: &'a Archive,
    block: u64,
    offset: usize,
    current: Option<Arc<MetaBlock>>,
}

impl MetaReader<'_> {
    /// The current position: (block, offset in it).
    pub fn position(&self) -> (u64, usize) {
        (self.block, self.offset)
    }

    /// The bytes left in the current block, loading the next block when this one is used up.
    fn available(&mut self) -> Result<Arc<MetaBlock>> {
        loop {
            let b = match &self.current {
                Some(b) => Arc::clone(b),
                None => {
                    let b = self.archive.meta_block(self.block)?;
                    self.current = Some(Arc::clone(&b));
                    b
                }
            };
            if self.offset < b.data.len() {
                return Ok(b);
            }
            if self.offset > b.data.len() {
                return Err(SqfsError::Corrupt(
                    "metadata offset past the end of its block",
                ));
            }
            // `next` is always after `block`, so this loop moves forward and ends at the
            // image end at the latest.
            (self.block, self.offset, self.current) = (b.next, 0, None);
        }
    }

    /// Fills `buf` from the metadata stream.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let b = self.available()?;
            let n = (b.data.len() - self.offset).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&b.data[self.offset..self.offset + n]);
            (done, self.offset) = (done + n, self.offset + n);
        }
        Ok(())
    }

    /// Skips `n` bytes of the metadata stream.
    pub fn skip(&mut self, mut n: usize) -> Result<()> {
        while n > 0 {
            let b = self.available()?;
            let step = (b.data.len() - self.offset).min(n);
            (n, self.offset) = (n - step, self.offset + step);
        }
        Ok(())
    }

    /// `n` bytes; callers bound `n` (names by 256, targets by PATH_MAX-like caps).
    pub fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.read(&mut v)?;
        Ok(v)
    }

    pub fn u16(&mut self) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
