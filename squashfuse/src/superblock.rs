//! The squashfs 4.0 superblock: the 96 bytes at the start of the partition that locate
//! every table. Offsets in it are relative to the partition start; `validate` checks the
//! fields everything else sizes buffers from (block size, compressor, version).

use crate::error::{Result, SqfsError};

const MAGIC: u32 = 0x7371_7368;
/// Bytes of the on-disk superblock.
pub const SIZE: usize = 96;
/// Flag: no xattr table.
const NO_XATTRS: u16 = 0x0200;
/// Flag: an export (inode number → inode reference) table exists.
const EXPORTABLE: u16 = 0x0080;
/// Table offsets with every bit set mean "absent".
pub const ABSENT: u64 = u64::MAX;

/// The compressors squashfs names; only some are decoded here (see `compress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    Gzip,
    Lzma,
    Lzo,
    Xz,
    Lz4,
    Zstd,
}

/// The fields of the superblock this server uses.
#[derive(Clone, Debug)]
pub struct Superblock {
    pub inode_count: u32,
    /// Creation time: part of what names an image in the shared cache.
    pub mkfs_time: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compressor: Compressor,
    pub flags: u16,
    pub id_count: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

impl Superblock {
    /// Parses and validates the superblock bytes.
    pub fn parse(b: &[u8; SIZE]) -> Result<Superblock> {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
        if u32_at(0) != MAGIC {
            return Err(SqfsError::BadMagic);
        }
        let (major, minor) = (u16_at(28), u16_at(30));
        if (major, minor) != (4, 0) {
            return Err(SqfsError::Version(major, minor));
        }
        let block_size = u32_at(12);
        let block_log = u16_at(22);
        // 4 KiB to 1 MiB, a power of two that agrees with its log: every data buffer is
        // sized from this one checked value.
        if !(4096..=1 << 20).contains(&block_size)
            || 1u32.checked_shl(block_log.into()) != Some(block_size)
        {
            return Err(SqfsError::BlockSize(block_size));
        }
        let compressor = match u16_at(20) {
            1 => Compressor::Gzip,
            2 => Compressor::Lzma,
            3 => Compressor::Lzo,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            n => return Err(SqfsError::Compressor(n)),
        };
        Ok(Superblock {
            inode_count: u32_at(4),
            mkfs_time: u32_at(8),
            block_size,
            fragment_count: u32_at(16),
            compressor,
            flags: u16_at(24),
            id_count: u16_at(26),
            root_inode: u64_at(32),
            bytes_used: u64_at(40),
            id_table: u64_at(48),
            xattr_table: u64_at(56),
            inode_table: u64_at(64),
            directory_table: u64_at(72),
            fragment_table: u64_at(80),
            export_table: u64_at(88),
        })
    }

    /// Whether the image has an xattr table.
    pub fn has_xattrs(&self) -> bool {
        self.flags & NO_XATTRS == 0 && self.xattr_table != ABSENT
    }

    /// Whether the image maps inode numbers back to inodes.
    pub fn has_export_table(&self) -> bool {
        self.flags & EXPORTABLE != 0 && self.export_table != ABSENT
    }
}
