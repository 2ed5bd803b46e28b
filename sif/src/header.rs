//! The 128-byte global header: packed little-endian fields, decoded and encoded by hand so
//! the layout is explicit.

use crate::error::SifError;
use crate::types::Arch;

/// Size of the global header on disk.
pub const HEADER_SIZE: usize = 128;
/// `SIF_MAGIC\0`.
pub const MAGIC: [u8; 10] = *b"SIF_MAGIC\0";
/// The only format version there is: `01\0`.
pub const VERSION: [u8; 3] = *b"01\0";
/// Go's zero `time.Time` in Unix seconds: the "unset" time of deterministic images.
pub const ZERO_TIME: i64 = -62_135_596_800;

/// The global header, field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub launch_script: [u8; 32],
    pub magic: [u8; 10],
    pub version: [u8; 3],
    /// Raw arch code of the primary system partition (`00\0` = none).
    pub arch: [u8; 3],
    /// UUID bytes in RFC 4122 order.
    pub id: [u8; 16],
    pub created_at: i64,
    pub modified_at: i64,
    pub descriptors_free: i64,
    pub descriptors_total: i64,
    pub descriptors_offset: i64,
    pub descriptors_size: i64,
    pub data_offset: i64,
    pub data_size: i64,
}

/// Reads little-endian values from a fixed buffer at a moving cursor.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        out
    }

    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes())
    }

    pub(crate) fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.bytes())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
}

impl Header {
    /// Decodes a header, checking magic and version as the reference does.
    pub fn parse(buf: &[u8; HEADER_SIZE]) -> Result<Header, SifError> {
        let mut f = Fields::new(buf);
        let h = Header {
            launch_script: f.bytes(),
            magic: f.bytes(),
            version: f.bytes(),
            arch: f.bytes(),
            id: f.bytes(),
            created_at: f.i64(),
            modified_at: f.i64(),
            descriptors_free: f.i64(),
            descriptors_total: f.i64(),
            descriptors_offset: f.i64(),
            descriptors_size: f.i64(),
            data_offset: f.i64(),
            data_size: f.i64(),
        };
        if h.magic != MAGIC {
            return Err(SifError::BadMagic);
        }
        if h.version != VERSION {
            return Err(SifError::BadVersion);
        }
        Ok(h)
    }

    /// Encodes the header as written to offset 0.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = Vec::with_capacity(HEADER_SIZE);
        out.extend_from_slice(&self.launch_script);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version);
        out.extend_from_slice(&self.arch);
        out.extend_from_slice(&self.id);
        for v in [
            self.created_at,
            self.modified_at,
            self.descriptors_free,
            self.descriptors_total,
            self.descriptors_offset,
            self.descriptors_size,
            self.data_offset,
            self.data_size,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut buf = [0u8; HEADER_SIZE];
        buf.copy_from_slice(&out);
        buf
    }

    /// The bytes a signature's header digest covers (61): launch script, magic, version
    /// and ID. Arch, times, counters and offsets are deliberately not covered.
    pub fn integrity_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(61);
        out.extend_from_slice(&self.launch_script);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version);
        out.extend_from_slice(&self.id);
        out
    }

    /// The launch script without its NUL padding.
    pub fn launch_script(&self) -> &[u8] {
        trim_nul(&self.launch_script)
    }

    /// Architecture of the primary system partition as recorded in the header.
    pub fn arch(&self) -> Arch {
        Arch::from_code(self.arch)
    }

    /// The version as text (`01`).
    pub fn version_str(&self) -> String {
        String::from_utf8_lossy(trim_nul(&self.version)).into_owned()
    }

    /// Whether the image ID is the nil UUID.
    pub fn id_is_nil(&self) -> bool {
        self.id == [0; 16]
    }

    /// The ID printed as a lower-case 8-4-4-4-12 UUID.
    pub fn id_string(&self) -> String {
        format_uuid(&self.id)
    }

    /// An image created "deterministically": nil ID and zero times. Changes to such an
    /// image keep zero times so that it stays reproducible.
    pub fn is_deterministic(&self) -> bool {
        self.id_is_nil() && self.created_at == ZERO_TIME && self.modified_at == ZERO_TIME
    }
}

/// Formats 16 bytes as a UUID string.
pub fn format_uuid(id: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The bytes without trailing NULs.
pub(crate) fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    &b[..end]
}

/// The bytes before the first NUL.
pub(crate) fn until_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}
