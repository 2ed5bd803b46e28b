//! Inodes: the basic and extended forms of the seven squashfs inode types, parsed on
//! demand from an inode reference. Only fixed-size fields are read here; the variable
//! parts (block list, directory index) are left in place and located by position.

use crate::archive::Archive;
use crate::error::{Result, SqfsError};

/// "No fragment" / "no xattrs".
pub const NONE: u32 = u32::MAX;
/// Longest symlink target accepted (Linux's PATH_MAX).
const MAX_TARGET: u32 = 4096;

/// The file type of an inode or a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    BlockDev,
    CharDev,
    Fifo,
    Socket,
}

impl Kind {
    /// The kind of a basic (1..=7) or extended (8..=14) type number.
    pub fn from_type(t: u16) -> Result<Kind> {
        Ok(match t {
            1 | 8 => Kind::Dir,
            2 | 9 => Kind::File,
            3 | 10 => Kind::Symlink,
            4 | 11 => Kind::BlockDev,
            5 | 12 => Kind::CharDev,
            6 | 13 => Kind::Fifo,
            7 | 14 => Kind::Socket,
            _ => return Err(SqfsError::Corrupt("unknown inode type")),
        })
    }
}

/// Where a directory's listing is and how to search it.
#[derive(Clone, Debug)]
pub struct DirInfo {
    /// Metadata block (partition position) and offset where the listing starts.
    pub block: u64,
    pub offset: usize,
    /// Bytes of listing (the stored size counts 3 more).
    pub listing: u32,
    /// Inode number of the parent directory.
    pub parent: u32,
    /// Entries of the directory index and where they start in the inode table.
    pub index_count: u16,
    pub index_at: (u64, usize),
}

/// Where a regular file's data is.
#[derive(Clone, Debug)]
pub struct FileInfo {
    pub blocks_start: u64,
    pub fragment: u32,
    pub fragment_offset: u32,
    /// Position of the block size list in the inode table.
    pub sizes_at: (u64, usize),
}

/// Type-specific contents.
#[derive(Clone, Debug)]
pub enum Body {
    Dir(DirInfo),
    File(FileInfo),
    Symlink(Vec<u8>),
    Device(u32),
    Ipc,
}

/// A parsed inode.
#[derive(Clone, Debug)]
pub struct Inode {
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub nlink: u32,
    pub size: u64,
    pub xattr: u32,
    pub body: Body,
}

impl Archive {
    /// Parses the inode at `reference` (`block << 16 | offset` into the inode table).
    pub fn inode(&self, reference: u64) -> Result<Inode> {
        let mut r = self.reader_at_ref(self.sb.inode_table, reference)?;
        let t = r.u16()?;
        let kind = Kind::from_type(t)?;
        let extended = t >= 8;
        let perm = r.u16()? & 0o7777;
        let uid = self.id(r.u16()?)?;
        let gid = self.id(r.u16()?)?;
        let mtime = r.u32()?;
        let _number = r.u32()?;
        let mut inode = Inode {
            kind,
            perm,
            uid,
            gid,
            mtime,
            nlink: 1,
            size: 0,
            xattr: NONE,
            body: Body::Ipc,
        };
        match (kind, extended) {
            (Kind::Dir, false) => {
                let block = r.u32()?;
                inode.nlink = r.u32()?;
                let size = r.u16()?;
                let offset = r.u16()?;
                let parent = r.u32()?;
                inode.size = size.into();
                inode.body = self.dir_body(block, offset, size.into(), parent, 0, r.position())?;
            }
            (Kind::Dir, true) => {
                inode.nlink = r.u32()?;
                let size = r.u32()?;
                let block = r.u32()?;
                let parent = r.u32()?;
                let index_count = r.u16()?;
                let offset = r.u16()?;
                inode.xattr = r.u32()?;
                inode.size = size.into();
                inode.body =
                    self.dir_body(block, offset, size, parent, index_count, r.position())?;
            }
            (Kind::File, false) => {
                let blocks_start = r.u32()?.into();
                let (fragment, fragment_offset) = (r.u32()?, r.u32()?);
                inode.size = r.u32()?.into();
                inode.body = Body::File(FileInfo {
                    blocks_start,
                    fragment,
                    fragment_offset,
                    sizes_at: r.position(),
                });
            }
            (Kind::File, true) => {
                let blocks_start = r.u64()?;
                inode.size = r.u64()?;
                let _sparse = r.u64()?;
                inode.nlink = r.u32()?;
                let (fragment, fragment_offset) = (r.u32()?, r.u32()?);
                inode.xattr = r.u32()?;
                inode.body = Body::File(FileInfo {
                    blocks_start,
                    fragment,
                    fragment_offset,
                    sizes_at: r.position(),
                });
            }
            (Kind::Symlink, _) => {
                inode.nlink = r.u32()?;
                let len = r.u32()?;
                if len > MAX_TARGET {
                    return Err(SqfsError::Corrupt("symlink target too long"));
                }
                let target = r.bytes(len as usize)?;
                if extended {
                    inode.xattr = r.u32()?;
                }
                inode.size = len.into();
                inode.body = Body::Symlink(target);
            }
            (Kind::BlockDev | Kind::CharDev, _) => {
                inode.nlink = r.u32()?;
                inode.body = Body::Device(r.u32()?);
                if extended {
                    inode.xattr = r.u32()?;
                }
            }
            (Kind::Fifo | Kind::Socket, _) => {
                inode.nlink = r.u32()?;
                if extended {
                    inode.xattr = r.u32()?;
                }
            }
        }
        Ok(inode)
    }

    fn dir_body(
        &self,
        block: u32,
        offset: u16,
        size: u32,
        parent: u32,
        index_count: u16,
        index_at: (u64, usize),
    ) -> Result<Body> {
        let block = self
            .sb
            .directory_table
            .checked_add(block.into())
            .ok_or(SqfsError::Corrupt("directory position overflows"))?;
        let offset = usize::from(offset);
        if offset >= crate::archive::META_SIZE {
            return Err(SqfsError::Corrupt("directory offset out of range"));
        }
        let listing = size.saturating_sub(3);
        Ok(Body::Dir(DirInfo {
            block,
            offset,
            listing,
            parent,
            index_count,
            index_at,
        }))
    }
}
