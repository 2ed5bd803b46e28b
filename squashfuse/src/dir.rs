//! Directory listings: runs of up to 256 entries, each run behind a header naming the
//! inode metadata block its entries live in. Listings are walked on demand; a resumable
//! position (`Cursor`) lets readdir continue where it stopped without rescanning, and the
//! directory index of large directories lets both lookup and resume jump close to the
//! target instead of reading the listing from the start.

use crate::archive::{Archive, MetaReader, META_SIZE};
use crate::error::{Result, SqfsError};
use crate::inode::{DirInfo, Kind};
use std::ops::ControlFlow;

/// Entries behind one header, at most (squashfs writes at most 256).
const MAX_RUN: u32 = 256;
/// Longest entry name.
const MAX_NAME: usize = 256;
/// Bytes of a run header and of an entry before its name.
const HEADER: u32 = 12;
const ENTRY: u32 = 8;

/// A position in a listing: the byte offset of a run header and how many of the run's
/// entries come before it. Fits in 41 bits, so readdir offsets can carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cursor {
    pub header: u32,
    pub skip: u32,
}

impl Cursor {
    /// The cursor as a readdir offset (after the two offsets for "." and "..").
    pub fn to_offset(self) -> u64 {
        3 + (u64::from(self.header) << 9 | u64::from(self.skip))
    }

    /// The inverse of `to_offset` for offsets of 3 and above.
    pub fn from_offset(off: u64) -> Option<Cursor> {
        let v = off.checked_sub(3)?;
        let header = u32::try_from(v >> 9).ok()?;
        Some(Cursor {
            header,
            skip: (v & 0x1ff) as u32,
        })
    }
}

/// One entry, borrowed from the walk.
pub struct Entry<'n> {
    pub name: &'n [u8],
    pub inode_ref: u64,
    pub kind: Kind,
    /// Where the walk continues after this entry.
    pub next: Cursor,
}

/// One entry of a directory index: the listing offset of a run header, the metadata block
/// holding it, and the first name of that run.
struct IndexEntry {
    listing_offset: u32,
    block: u32,
    name: Vec<u8>,
}

impl Archive {
    /// Calls `f` on the entries of `dir` from `from` on, until it breaks or the listing ends.
    pub fn walk_dir(
        &self,
        dir: &DirInfo,
        from: Cursor,
        mut f: impl FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        if from.header > dir.listing {
            return Ok(());
        }
        let (mut r, mut consumed) =
            self.seek_listing(dir, from.header, |i| i.listing_offset <= from.header)?;
        r.skip((from.header - consumed) as usize)?;
        consumed = from.header;
        let mut skip = from.skip;
        let mut name = [0u8; MAX_NAME];
        while consumed.saturating_add(HEADER) <= dir.listing {
            let header = consumed;
            let count = r.u32()?.saturating_add(1);
            let (block, _base_number) = (r.u32()?, r.u32()?);
            consumed += HEADER;
            if count > MAX_RUN {
                return Err(SqfsError::Corrupt("directory run too long"));
            }
            for i in 0..count {
                if consumed.saturating_add(ENTRY) > dir.listing {
                    return Err(SqfsError::Corrupt("directory entry past the listing"));
                }
                let offset = r.u16()?;
                let _delta = r.u16()?;
                let t = r.u16()?;
                let len = usize::from(r.u16()?) + 1;
                consumed = consumed.saturating_add(ENTRY + len as u32);
                if len > MAX_NAME || consumed > dir.listing {
                    return Err(SqfsError::Corrupt("directory entry name too long"));
                }
                if i < skip {
                    r.skip(len)?;
                    continue;
                }
                r.read(&mut name[..len])?;
                let entry = Entry {
                    name: &name[..len],
                    inode_ref: u64::from(block) << 16 | u64::from(offset),
                    kind: Kind::from_type(t)?,
                    next: Cursor {
                        header,
                        skip: i + 1,
                    },
                };
                if f(entry).is_break() {
                    return Ok(());
                }
            }
            skip = 0;
        }
        Ok(())
    }

    /// The inode reference and kind of `name` in `dir`.
    pub fn lookup(&self, dir: &DirInfo, name: &[u8]) -> Result<Option<(u64, Kind)>> {
        let mut start = Cursor::default();
        let mut indexed = false;
        if dir.index_count > 0 {
            // The index lists the first name of runs that start a new metadata block, in
            // sorted order: the target is at or after the last one not greater than it.
            for e in self.dir_index(dir)? {
                if e.name.as_slice() > name {
                    break;
                }
                start = Cursor {
                    header: e.listing_offset,
                    skip: 0,
                };
            }
            indexed = true;
        }
        let mut found = None;
        self.walk_dir(dir, start, |e| {
            if e.name == name {
                found = Some((e.inode_ref, e.kind));
                return ControlFlow::Break(());
            }
            // An indexed listing is sorted (the index relies on it), so passing the name
            // means it is absent; unindexed listings are short and scanned to the end.
            if indexed && e.name > name {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// A reader at the listing position closest before `target`: the last index entry
    /// that `usable` accepts, or the listing start. Returns the reader and its listing offset.
    fn seek_listing(
        &self,
        dir: &DirInfo,
        target: u32,
        usable: impl Fn(&IndexEntry) -> bool,
    ) -> Result<(MetaReader<'_>, u32)> {
        let mut best = None;
        if dir.index_count > 0 && target > 0 {
            for e in self.dir_index(dir)? {
                if !usable(&e) {
                    break;
                }
                best = Some((e.block, e.listing_offset));
            }
        }
        Ok(match best {
            Some((block, at)) => {
                let block = self
                    .sb
                    .directory_table
                    .checked_add(block.into())
                    .ok_or(SqfsError::Corrupt("index overflows"))?;
                (
                    self.reader(block, (dir.offset + at as usize) % META_SIZE),
                    at,
                )
            }
            None => (self.reader(dir.block, dir.offset), 0),
        })
    }

    fn dir_index(&self, dir: &DirInfo) -> Result<Vec<IndexEntry>> {
        let mut r = self.reader(dir.index_at.0, dir.index_at.1);
        let mut out = Vec::with_capacity(usize::from(dir.index_count));
        let mut last = 0;
        for _ in 0..dir.index_count {
            let (listing_offset, block) = (r.u32()?, r.u32()?);
            let len = r.u32()? as usize + 1;
            if len > MAX_NAME || listing_offset < last || listing_offset >= dir.listing {
                return Err(SqfsError::Corrupt("bad directory index entry"));
            }
            last = listing_offset;
            out.push(IndexEntry {
                listing_offset,
                block,
                name: r.bytes(len)?,
            });
        }
        Ok(out)
    }
}
