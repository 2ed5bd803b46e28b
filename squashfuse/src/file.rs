//! Regular file data: the block list of a file (kept per inode in a small cache, with the
//! position of every block summed once), sparse blocks, uncompressed blocks and the tail
//! kept in a fragment block. A read copies from cached decompressed blocks, so requests
//! that straddle block boundaries never decompress a block twice. Compressed blocks (and
//! compressed tails) also go through the cache shared with other servers of the image:
//! looked up there before decompressing, stored there after.

use crate::archive::{Archive, UNCOMPRESSED_BLOCK};
use crate::error::{Result, SqfsError};
use crate::inode::{FileInfo, NONE};
use crate::shared_cache::CachedFile;
use std::sync::Arc;

/// Bit of an on-disk data block size meaning "stored uncompressed".
const SIZE_MASK: u32 = (1 << 24) - 1;

/// Where each block of one file is.
pub struct FileLayout {
    pub size: u64,
    /// On-disk size words (0 = sparse block) and positions of the full blocks.
    disk: Vec<u32>,
    starts: Vec<u64>,
    /// Fragment index and offset of the tail, when the tail is in a fragment.
    tail: Option<(u32, u32)>,
    /// This file's files in the shared cache, when there is one.
    pub shared: Option<CachedFile>,
}

impl Archive {
    /// Reads the block list of a file of `size` bytes.
    pub fn file_layout(&self, f: &FileInfo, size: u64) -> Result<FileLayout> {
        let bs = u64::from(self.sb.block_size);
        let tail = (f.fragment != NONE).then_some((f.fragment, f.fragment_offset));
        let blocks = if tail.is_some() {
            size / bs
        } else {
            size.div_ceil(bs)
        };
        // Each block has a 4-byte entry in the inode table, inside the image: a count
        // larger than the image is corrupt and must not size an allocation.
        if blocks.saturating_mul(4) > self.sb.bytes_used {
            return Err(SqfsError::Corrupt("file block list larger than the image"));
        }
        let blocks = blocks as usize;
        let mut r = self.reader(f.sizes_at.0, f.sizes_at.1);
        // Grown as entries are actually read, so memory follows what the image holds,
        // not what a size field claims.
        let (mut disk, mut starts) = (Vec::new(), Vec::new());
        let mut at = f.blocks_start;
        for _ in 0..blocks {
            let word = r.u32()?;
            starts.push(at);
            disk.push(word);
            at = at
                .checked_add(u64::from(word & SIZE_MASK))
                .ok_or(SqfsError::Corrupt("block position overflows"))?;
        }
        Ok(FileLayout {
            size,
            disk,
            starts,
            tail,
            shared: None,
        })
    }

    /// Up to `len` bytes of the file at `offset` (fewer at the end of the file).
    pub fn read_file(&self, l: &FileLayout, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(l.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let bs = u64::from(self.sb.block_size);
        let mut pos = offset;
        while pos < end {
            let (index, within) = ((pos / bs) as usize, (pos % bs) as usize);
            let block_end = ((index as u64 + 1) * bs).min(l.size);
            let take = (block_end.min(end) - pos) as usize;
            if index < l.disk.len() {
                self.copy_block(l, index, within, take, &mut out)?;
            } else {
                self.copy_tail(l, within, take, &mut out)?;
            }
            pos += take as u64;
        }
        Ok(out)
    }

    fn copy_block(
        &self,
        l: &FileLayout,
        index: usize,
        within: usize,
        take: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let disk = l.disk[index];
        if disk & SIZE_MASK == 0 {
            out.resize(out.len() + take, 0);
            return Ok(());
        }
        self.copy_data(
            l,
            index,
            (l.starts[index], disk),
            0,
            within..within + take,
            out,
        )
    }

    fn copy_tail(
        &self,
        l: &FileLayout,
        within: usize,
        take: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (fragment, offset) = l
            .tail
            .ok_or(SqfsError::Corrupt("file shorter than its size"))?;
        let at = self.fragment(fragment)?;
        let index = l.disk.len();
        self.copy_data(l, index, at, offset as usize, within..within + take, out)
    }

    /// Appends bytes `want` of the file's block `index`, which starts at `offset` in the data
    /// block at `at` (0, or the tail's offset in its fragment). A compressed block comes from
    /// the cache shared with other servers when it is there; otherwise it is decompressed (or
    /// taken from this server's own cache) and the file's part of it, whole, is offered to the
    /// shared cache: a fragment block already held for another file's tail still has to be
    /// stored for this one. Uncompressed blocks are not shared: the image is as cheap to read.
    fn copy_data(
        &self,
        l: &FileLayout,
        index: usize,
        (pos, disk): (u64, u32),
        offset: usize,
        want: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let compressed = disk & UNCOMPRESSED_BLOCK == 0;
        if compressed && self.copy_shared(l, index, want.start, want.len(), out) {
            return Ok(());
        }
        let block: Arc<Vec<u8>> = self.data_block(pos, disk)?;
        out.extend_from_slice(slice(&block, offset + want.start, want.len())?);
        if compressed {
            let file_part = l
                .size
                .saturating_sub(index as u64 * u64::from(self.sb.block_size));
            let len = (file_part as usize).min(block.len().saturating_sub(offset));
            if let Ok(part) = slice(&block, offset, len) {
                self.store_shared(l, index, part);
            }
        }
        Ok(())
    }

    /// Appends `take` bytes from `within` in block `index` from the shared cache; false
    /// (and `out` unchanged) when the block is not there.
    fn copy_shared(
        &self,
        l: &FileLayout,
        index: usize,
        within: usize,
        take: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let (Some(cache), Some(file)) = (&self.shared, &l.shared) else {
            return false;
        };
        let start = out.len();
        out.resize(start + take, 0);
        if cache.read(file, index as u64, within, &mut out[start..]) {
            return true;
        }
        out.truncate(start);
        false
    }

    /// Offers the complete content of block `index` to the shared cache.
    fn store_shared(&self, l: &FileLayout, index: usize, block: &[u8]) {
        if let (Some(cache), Some(file)) = (&self.shared, &l.shared) {
            cache.store(file, index as u64, block);
        }
    }
}

fn slice(block: &[u8], from: usize, len: usize) -> Result<&[u8]> {
    from.checked_add(len)
        .and_then(|end| block.get(from..end))
        .ok_or(SqfsError::Corrupt("data block shorter than the file needs"))
}
