//! The 585-byte descriptor and the type-specific metadata packed into its `Extra` field.

use crate::header::{trim_nul, until_nul, Fields};
use crate::types::{
    Arch, DataType, FormatType, FsType, HashType, MessageType, PartType, SbomFormat,
};

/// Size of one descriptor slot on disk.
pub const DESCRIPTOR_SIZE: usize = 585;
/// Size of the `Name` field.
pub const NAME_SIZE: usize = 128;
/// Size of the `Extra` field.
pub const EXTRA_SIZE: usize = 384;
/// Mask ORed into group IDs (and group links) on disk.
pub const GROUP_MASK: u32 = 0xf000_0000;

/// One descriptor slot, field for field (raw group and link values included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub data_type: DataType,
    pub used: bool,
    pub id: u32,
    /// GroupID as stored: `group | 0xf0000000`.
    pub group_raw: u32,
    /// LinkedID as stored: 0, an object ID, or `group | 0xf0000000`.
    pub link_raw: u32,
    pub offset: i64,
    pub size: i64,
    pub size_with_padding: i64,
    pub created_at: i64,
    pub modified_at: i64,
    pub uid: i64,
    pub gid: i64,
    pub name: [u8; NAME_SIZE],
    pub extra: [u8; EXTRA_SIZE],
}

/// What a descriptor links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    None,
    Object(u32),
    Group(u32),
}

/// Metadata of a partition object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMeta {
    pub fs_type: FsType,
    pub part_type: PartType,
    pub arch: Arch,
}

/// Metadata of a signature object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureMeta {
    pub hash: HashType,
    /// OpenPGP v4 fingerprint of the signing key; `None` when all zero (DSSE).
    pub fingerprint: Option<[u8; 20]>,
}

impl Descriptor {
    /// An unused slot (585 zero bytes).
    pub fn empty() -> Descriptor {
        Descriptor {
            data_type: DataType::Unknown(0),
            used: false,
            id: 0,
            group_raw: 0,
            link_raw: 0,
            offset: 0,
            size: 0,
            size_with_padding: 0,
            created_at: 0,
            modified_at: 0,
            uid: 0,
            gid: 0,
            name: [0; NAME_SIZE],
            extra: [0; EXTRA_SIZE],
        }
    }

    /// Decodes one slot. Never fails: any 585 bytes are a descriptor.
    pub fn parse(buf: &[u8; DESCRIPTOR_SIZE]) -> Descriptor {
        let mut f = Fields::new(buf);
        Descriptor {
            data_type: DataType::from_raw(f.i32()),
            used: f.bytes::<1>()[0] != 0,
            id: f.u32(),
            group_raw: f.u32(),
            link_raw: f.u32(),
            offset: f.i64(),
            size: f.i64(),
            size_with_padding: f.i64(),
            created_at: f.i64(),
            modified_at: f.i64(),
            uid: f.i64(),
            gid: f.i64(),
            name: f.bytes(),
            extra: f.bytes(),
        }
    }

    /// Encodes the slot as written to the descriptor table.
    pub fn to_bytes(&self) -> [u8; DESCRIPTOR_SIZE] {
        let mut out = Vec::with_capacity(DESCRIPTOR_SIZE);
        out.extend_from_slice(&self.data_type.raw().to_le_bytes());
        out.push(u8::from(self.used));
        for v in [self.id, self.group_raw, self.link_raw] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.offset,
            self.size,
            self.size_with_padding,
            self.created_at,
            self.modified_at,
            self.uid,
            self.gid,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.extra);
        let mut buf = [0u8; DESCRIPTOR_SIZE];
        buf.copy_from_slice(&out);
        buf
    }

    /// The bytes a signature's descriptor digest covers (557). `relative_id` is the ID minus
    /// the smallest ID of the same group ([`crate::Image::relative_id`]); ID, group, offset,
    /// padding and modification time are not covered, so objects can be moved.
    pub fn integrity_bytes(&self, relative_id: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(557);
        out.extend_from_slice(&self.data_type.raw().to_le_bytes());
        out.push(u8::from(self.used));
        out.extend_from_slice(&relative_id.to_le_bytes());
        out.extend_from_slice(&self.link_raw.to_le_bytes());
        for v in [self.size, self.created_at, self.uid, self.gid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.extra);
        out
    }

    /// Group number, 0 meaning "no group".
    pub fn group(&self) -> u32 {
        self.group_raw & !GROUP_MASK
    }

    /// The link target.
    pub fn link(&self) -> Link {
        let id = self.link_raw & !GROUP_MASK;
        if id == 0 {
            Link::None
        } else if self.link_raw & GROUP_MASK == GROUP_MASK {
            Link::Group(id)
        } else {
            Link::Object(id)
        }
    }

    /// The object name with trailing NULs removed (lossy UTF-8).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(trim_nul(&self.name)).into_owned()
    }

    /// End of the object data (`offset + size`), if it does not overflow.
    pub fn end(&self) -> Option<i64> {
        self.offset.checked_add(self.size)
    }

    fn extra_i32(&self, at: usize) -> i32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.extra[at..at + 4]);
        i32::from_le_bytes(b)
    }

    /// Partition metadata, for partition objects.
    pub fn partition(&self) -> Option<PartitionMeta> {
        (self.data_type == DataType::Partition).then(|| PartitionMeta {
            fs_type: FsType::from_raw(self.extra_i32(0)),
            part_type: PartType::from_raw(self.extra_i32(4)),
            arch: Arch::from_code([self.extra[8], self.extra[9], self.extra[10]]),
        })
    }

    /// Signature metadata, for signature objects.
    pub fn signature(&self) -> Option<SignatureMeta> {
        if self.data_type != DataType::Signature {
            return None;
        }
        let mut fp = [0u8; 20];
        fp.copy_from_slice(&self.extra[4..24]);
        Some(SignatureMeta {
            hash: HashType::from_raw(self.extra_i32(0)),
            fingerprint: (fp != [0; 20]).then_some(fp),
        })
    }

    /// Format and message type, for cryptographic message objects.
    pub fn crypto_message(&self) -> Option<(FormatType, MessageType)> {
        (self.data_type == DataType::CryptoMessage).then(|| {
            (
                FormatType::from_raw(self.extra_i32(0)),
                MessageType::from_raw(self.extra_i32(4)),
            )
        })
    }

    /// Format, for SBOM objects.
    pub fn sbom_format(&self) -> Option<SbomFormat> {
        (self.data_type == DataType::Sbom).then(|| SbomFormat::from_raw(self.extra_i32(0)))
    }

    /// Digest (`algorithm:hex`) of OCI root index and OCI blob objects.
    pub fn oci_digest(&self) -> Option<String> {
        matches!(self.data_type, DataType::OciRootIndex | DataType::OciBlob)
            .then(|| String::from_utf8_lossy(until_nul(&self.extra)).into_owned())
    }

    /// Whether this is the primary system partition.
    pub fn is_primary_partition(&self) -> bool {
        self.used
            && self
                .partition()
                .is_some_and(|p| p.part_type == PartType::PrimSys)
    }
}
