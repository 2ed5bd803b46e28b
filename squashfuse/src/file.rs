//! Regular file data: the block list of a file (kept per inode in a small cache, with the
//! position of every block summed once), sparse blocks, uncompressed blocks and the tail
//! kept in a fragment block. A read copies from cached decompressed blocks, so requests
//! that straddle block boundaries never decompress a block twice.

use crate::archive::Archive;
use crate::error::{Result, SqfsError};
use crate::inode::{FileInfo, NONE};
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
        if l.disk[index] & SIZE_MASK == 0 {
            out.resize(out.len() + take, 0);
            return Ok(());
        }
        let block = self.data_block(l.starts[index], l.disk[index])?;
        out.extend_from_slice(slice(&block, within, take)?);
        Ok(())
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
        let (pos, disk) = self.fragment(fragment)?;
        let block: Arc<Vec<u8>> = self.data_block(pos, disk)?;
        out.extend_from_slice(slice(&block, offset as usize + within, take)?);
        Ok(())
    }
}

fn slice(block: &[u8], from: usize, len: usize) -> Result<&[u8]> {
    from.checked_add(len)
        .and_then(|end| block.get(from..end))
        .ok_or(SqfsError::Corrupt("data block shorter than the file needs"))
}
