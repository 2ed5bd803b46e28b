//! Extended attributes: an inode's xattr index selects an id entry (position, count and
//! total size of its key/value list); values may be stored out of line, referenced from
//! the list. Names are stored without their namespace prefix, which the type restores.

use crate::archive::Archive;
use crate::error::{Result, SqfsError};
use crate::inode::NONE;

/// Flag on an xattr type: the value is a reference to a value stored elsewhere.
const OUT_OF_LINE: u16 = 0x100;
/// Linux's limits on one value and one name; squashfs-tools enforces the same.
const MAX_VALUE: u32 = 65536;
const MAX_NAME: usize = 255;
/// An inode's whole list may not exceed this, whatever its id entry claims.
const MAX_TOTAL: usize = 1 << 20;

/// One attribute: the full name (with prefix) and the value.
pub type Xattr = (Vec<u8>, Vec<u8>);

impl Archive {
    /// The xattrs of an inode whose xattr index is `index` (empty for `NONE`).
    pub fn xattrs(&self, index: u32) -> Result<Vec<Xattr>> {
        if index == NONE || !self.sb.has_xattrs() {
            return Ok(Vec::new());
        }
        let (kv_start, ids) = self.xattr_header()?;
        if index >= ids {
            return Err(SqfsError::Corrupt("xattr index out of range"));
        }
        let at = self
            .sb
            .xattr_table
            .checked_add(16)
            .ok_or(SqfsError::Corrupt("xattr table overflows"))?;
        let pointers = self.read_index(at, u64::from(ids), 16)?;
        let block = *pointers
            .get(index as usize / 512)
            .ok_or(SqfsError::Corrupt("xattr table too short"))?;
        let mut r = self.reader(block, (index as usize % 512) * 16);
        let (list, count) = (r.u64()?, r.u32()?);
        let mut r = self.reader_at_ref(kv_start, list)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for _ in 0..count {
            let t = r.u16()?;
            let name_len = usize::from(r.u16()?);
            let prefix: &[u8] = match t & 0xff {
                0 => b"user.",
                1 => b"trusted.",
                2 => b"security.",
                _ => return Err(SqfsError::Corrupt("unknown xattr namespace")),
            };
            if name_len > MAX_NAME {
                return Err(SqfsError::Corrupt("xattr name too long"));
            }
            let mut name = prefix.to_vec();
            name.extend(r.bytes(name_len)?);
            let value = if t & OUT_OF_LINE != 0 {
                if r.u32()? != 8 {
                    return Err(SqfsError::Corrupt("bad out-of-line xattr reference"));
                }
                let at = r.u64()?;
                self.xattr_value(&mut self.reader_at_ref(kv_start, at)?)?
            } else {
                self.xattr_value(&mut r)?
            };
            total += name.len() + value.len();
            if total > MAX_TOTAL {
                return Err(SqfsError::Corrupt("xattr list too large"));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    /// Position of the key/value lists and number of id entries.
    fn xattr_header(&self) -> Result<(u64, u32)> {
        let mut b = [0u8; 16];
        self.read_at(self.sb.xattr_table, &mut b)?;
        let kv = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let ids = u32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
        Ok((kv, ids))
    }

    fn xattr_value(&self, r: &mut crate::archive::MetaReader<'_>) -> Result<Vec<u8>> {
        let len = r.u32()?;
        if len > MAX_VALUE {
            return Err(SqfsError::Corrupt("xattr value too long"));
        }
        r.bytes(len as usize)
    }
}
