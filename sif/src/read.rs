//! Loading an image from any `Read + Seek`: header, descriptor table, object data.
//!
//! The reference checks only magic and version. This reader is also linked by the privileged
//! starter, so it treats the file as hostile: every count, offset and size is checked
//! against the real file length before it is used, nothing is allocated from an unchecked
//! count, and no input can make it panic.

use std::io::{self, Read, Seek, SeekFrom};

use crate::descriptor::{Descriptor, DESCRIPTOR_SIZE};
use crate::error::SifError;
use crate::header::{Header, HEADER_SIZE};
use crate::types::{Arch, FsType, PartType};

/// Most descriptor slots accepted (the reference creates 48). Bounds the table read.
pub const MAX_DESCRIPTORS: i64 = 1 << 16;

/// A loaded image: the header and every descriptor slot. Object data stays in the file.
#[derive(Debug, Clone)]
pub struct Image {
    header: Header,
    slots: Vec<Descriptor>,
    file_len: u64,
}

/// Where the primary system partition lies, all the starter needs to mount it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub id: u32,
    pub offset: u64,
    pub size: u64,
    pub fs_type: FsType,
    pub part_type: PartType,
    pub arch: Arch,
}

/// Reads only header and descriptors and returns the primary system partition.
pub fn primary_partition<R: Read + Seek>(r: &mut R) -> Result<Partition, SifError> {
    let image = Image::load(r)?;
    let d = image
        .primary_partition()
        .ok_or(SifError::NoPrimaryPartition)?;
    let meta = d.partition().ok_or(SifError::NoPrimaryPartition)?;
    Ok(Partition {
        id: d.id,
        // Both were checked non-negative by `load`.
        offset: d.offset as u64,
        size: d.size as u64,
        fs_type: meta.fs_type,
        part_type: meta.part_type,
        arch: meta.arch,
    })
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], what: &'static str) -> Result<(), SifError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SifError::Truncated(what),
        _ => SifError::Io(e),
    })
}

impl Image {
    /// Loads and checks header and descriptor table.
    pub fn load<R: Read + Seek>(r: &mut R) -> Result<Image, SifError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut hbuf = [0u8; HEADER_SIZE];
        read_exact_or(r, &mut hbuf, "header")?;
        let header = Header::parse(&hbuf)?;
        let table_len = check_header(&header, file_len)?;

        r.seek(SeekFrom::Start(header.descriptors_offset as u64))?;
        // Bounded: at most MAX_DESCRIPTORS slots, and no more bytes than the file holds.
        let mut table = vec![0u8; table_len];
        read_exact_or(r, &mut table, "descriptor table")?;
        let slots = table
            .chunks_exact(DESCRIPTOR_SIZE)
            .map(|c| {
                let mut b = [0u8; DESCRIPTOR_SIZE];
                b.copy_from_slice(c);
                Descriptor::parse(&b)
            })
            .collect();
        let image = Image {
            header,
            slots,
            file_len,
        };
        image.check_objects()?;
        Ok(image)
    }

    /// Every used object lies in the file, after the descriptor table, and no two overlap.
    fn check_objects(&self) -> Result<(), SifError> {
        let table_end = self.header.descriptors_offset as u64
            + self.slots.len() as u64 * DESCRIPTOR_SIZE as u64;
        let mut ranges = Vec::new();
        for (i, d) in self.slots.iter().enumerate() {
            if !d.used {
                continue;
            }
            let bad = |what| SifError::BadDescriptor { id: d.id, what };
            // The reference numbers objects by slot; other writers may not, but lookups by
            // ID must stay unambiguous.
            if d.id == 0 {
                return Err(bad("object id 0"));
            }
            if self.slots[..i].iter().any(|o| o.used && o.id == d.id) {
                return Err(bad("duplicate object id"));
            }
            if d.offset < 0 || d.size < 0 {
                return Err(bad("negative offset or size"));
            }
            let end = d.end().ok_or(bad("offset + size overflows"))? as u64;
            if end > self.file_len {
                return Err(bad("object extends past end of file"));
            }
            if d.size > 0 && (d.offset as u64) < table_end {
                return Err(bad("object overlaps header or descriptor table"));
            }
            if d.size > 0 {
                ranges.push((d.offset as u64, end, d.id));
            }
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(SifError::Overlap {
                    a: w[0].2,
                    b: w[1].2,
                });
            }
        }
        Ok(())
    }

    /// The global header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Every slot of the table, used or not, in slot order.
    pub fn slots(&self) -> &[Descriptor] {
        &self.slots
    }

    /// The used descriptors in slot order.
    pub fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.slots.iter().filter(|d| d.used)
    }

    /// Length of the file the image was loaded from.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The used descriptor with this ID.
    pub fn descriptor(&self, id: u32) -> Result<&Descriptor, SifError> {
        if self.header.descriptors_free == self.header.descriptors_total {
            return Err(SifError::NoObjects);
        }
        self.descriptors()
            .find(|d| d.id == id)
            .ok_or(SifError::ObjectNotFound)
    }

    /// The primary system partition, if there is one.
    pub fn primary_partition(&self) -> Option<&Descriptor> {
        self.descriptors().find(|d| d.is_primary_partition())
    }

    /// `id` minus the smallest ID with the same raw group, as signatures record it.
    pub fn relative_id(&self, d: &Descriptor) -> u32 {
        let min = self
            .descriptors()
            .filter(|o| o.group_raw == d.group_raw)
            .map(|o| o.id)
            .min()
            .unwrap_or(d.id);
        d.id.saturating_sub(min)
    }

    /// A reader over the data of object `id` (exactly `Size` bytes).
    pub fn object_reader<'r, R: Read + Seek>(
        &self,
        r: &'r mut R,
        id: u32,
    ) -> Result<io::Take<&'r mut R>, SifError> {
        let d = self.descriptor(id)?;
        r.seek(SeekFrom::Start(d.offset as u64))?;
        Ok(r.take(d.size as u64))
    }

    /// The data of object `id` in memory. Bounded by the file length, but meant for small
    /// objects (signatures, JSON); stream partitions with [`Image::object_reader`].
    pub fn read_object<R: Read + Seek>(&self, r: &mut R, id: u32) -> Result<Vec<u8>, SifError> {
        let size = self.descriptor(id)?.size as usize;
        let mut out = Vec::with_capacity(size);
        self.object_reader(r, id)?.read_to_end(&mut out)?;
        if out.len() != size {
            return Err(SifError::Truncated("object data"));
        }
        Ok(out)
    }
}

/// Checks the header counts against each other and the file length; returns the table size.
fn check_header(h: &Header, file_len: u64) -> Result<usize, SifError> {
    if !(0..=MAX_DESCRIPTORS).contains(&h.descriptors_total) {
        return Err(SifError::BadHeader("descriptor count out of range"));
    }
    if !(0..=h.descriptors_total).contains(&h.descriptors_free) {
        return Err(SifError::BadHeader("free descriptor count out of range"));
    }
    if h.descriptors_offset < HEADER_SIZE as i64 {
        return Err(SifError::BadHeader("descriptor table overlaps header"));
    }
    let table_len = h.descriptors_total as u64 * DESCRIPTOR_SIZE as u64;
    if (h.descriptors_size as u64) < table_len || h.descriptors_size < 0 {
        return Err(SifError::Truncated("descriptor table"));
    }
    let end = (h.descriptors_offset as u64).checked_add(table_len);
    if end.is_none_or(|e| e > file_len && table_len > 0) {
        return Err(SifError::Truncated("descriptor table"));
    }
    if h.data_offset < 0 || h.data_size < 0 {
        return Err(SifError::BadHeader("negative data offset or size"));
    }
    Ok(table_len as usize)
}
