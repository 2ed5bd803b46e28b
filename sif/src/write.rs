//! Writing images (feature `write`): create, add, delete, set the primary partition.
//!
//! The rules follow the reference library so that the same inputs give the same bytes:
//! data starts right after the descriptor table, partitions are aligned to 4096 on the
//! absolute offset, IDs are slot index + 1 (first free slot), padding is never written
//! (holes read as zero), and deterministic images (nil ID, zero times) keep zero times.
//! Object data is streamed, never held in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::descriptor::{Descriptor, DESCRIPTOR_SIZE, EXTRA_SIZE, GROUP_MASK, NAME_SIZE};
use crate::error::SifError;
use crate::header::{Header, HEADER_SIZE, MAGIC, VERSION, ZERO_TIME};
use crate::read::Image;
use crate::types::{
    Arch, DataType, FormatType, FsType, HashType, MessageType, PartType, SbomFormat,
};

/// Descriptor slots of a new image unless told otherwise.
pub const DEFAULT_CAPACITY: u32 = 48;
/// Where the descriptor table starts in every image this writer creates.
pub const DESCRIPTORS_OFFSET: i64 = 4096;
/// Default alignment of partition objects.
pub const PARTITION_ALIGNMENT: u64 = 4096;
/// Group of new objects unless told otherwise.
pub const DEFAULT_GROUP: u32 = 1;
/// The launch script image builders put in SIF files so they run as scripts.
pub const RUN_SINGULARITY: &str = "#!/usr/bin/env run-singularity\n";

/// How to create an image.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Image ID; `None` = a random v4 UUID.
    pub id: Option<uuid::Uuid>,
    /// Creation time (Unix seconds) for header and objects; `None` = now.
    pub time: Option<i64>,
    /// Launch script, at most 31 bytes.
    pub launch_script: String,
    /// Number of descriptor slots.
    pub capacity: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            id: None,
            time: None,
            launch_script: String::new(),
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl CreateOptions {
    /// Nil ID and Go's zero time everywhere: the same inputs give the same bytes.
    pub fn deterministic() -> Self {
        CreateOptions {
            id: Some(uuid::Uuid::nil()),
            time: Some(ZERO_TIME),
            ..Self::default()
        }
    }
}

/// Where an object's data comes from. Files and readers are streamed.
pub enum DataSource {
    Bytes(Vec<u8>),
    /// Copied from the file's current position to its end.
    File(File),
    /// Copied until end of stream.
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            DataSource::File(file) => write!(f, "File({file:?})"),
            DataSource::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

/// Type-specific metadata of a new object (the descriptor's `Extra`).
#[derive(Debug, Clone)]
enum Meta {
    None,
    Partition(FsType, PartType, Arch),
    Signature(HashType, [u8; 20]),
    CryptoMessage(FormatType, MessageType),
    Sbom(SbomFormat),
    /// `None`: the SHA-256 of the data, computed while copying.
    OciDigest(Option<String>),
    Raw(Vec<u8>),
}

/// One object to add: data, type and descriptor options.
#[derive(Debug)]
pub struct DescriptorInput {
    data_type: DataType,
    source: DataSource,
    group: u32,
    link_raw: u32,
    alignment: Option<u64>,
    name: Vec<u8>,
    time: Option<i64>,
    meta: Meta,
}

impl DescriptorInput {
    /// An object of type `data_type` in group 1, unaligned unless it is a partition.
    /// OCI root index and blob objects get the SHA-256 digest of their data.
    pub fn new(data_type: DataType, source: DataSource) -> Self {
        let meta = match data_type {
            DataType::OciBlob | DataType::OciRootIndex => Meta::OciDigest(None),
            _ => Meta::None,
        };
        DescriptorInput {
            data_type,
            source,
            group: DEFAULT_GROUP,
            link_raw: 0,
            alignment: None,
            name: Vec::new(),
            time: None,
            meta,
        }
    }

    /// Object group; 0 = no group.
    pub fn group(mut self, group: u32) -> Self {
        self.group = group;
        self
    }

    /// No object group (what `siftool add` uses by default).
    pub fn no_group(self) -> Self {
        self.group(0)
    }

    /// Links this object to object `id` (0 = no link).
    pub fn link(mut self, id: u32) -> Self {
        self.link_raw = id;
        self
    }

    /// Links this object to group `group` (0 = no link).
    pub fn link_group(mut self, group: u32) -> Self {
        self.link_raw = if group == 0 { 0 } else { group | GROUP_MASK };
        self
    }

    /// Alignment of the data on the absolute file offset (0 = none).
    pub fn alignment(mut self, alignment: u64) -> Self {
        self.alignment = Some(alignment);
        self
    }

    /// Object name, at most 128 bytes.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.as_bytes().to_vec();
        self
    }

    /// Creation and modification time of the object, instead of the image's.
    pub fn time(mut self, t: i64) -> Self {
        self.time = Some(t);
        self
    }

    /// Partition metadata (for `DataType::Partition`).
    pub fn partition(mut self, fs: FsType, part: PartType, arch: Arch) -> Self {
        self.meta = Meta::Partition(fs, part, arch);
        self
    }

    /// Signature metadata: hash and the signing key's 20-byte fingerprint (zero for none).
    pub fn signature(mut self, hash: HashType, fingerprint: [u8; 20]) -> Self {
        self.meta = Meta::Signature(hash, fingerprint);
        self
    }

    /// Cryptographic message metadata.
    pub fn crypto_message(mut self, format: FormatType, message: MessageType) -> Self {
        self.meta = Meta::CryptoMessage(format, message);
        self
    }

    /// SBOM format.
    pub fn sbom(mut self, format: SbomFormat) -> Self {
        self.meta = Meta::Sbom(format);
        self
    }

    /// Digest (`sha256:<hex>`) of an OCI object, when it is known and need not be computed.
    pub fn oci_digest(mut self, digest: &str) -> Self {
        self.meta = Meta::OciDigest(Some(digest.to_string()));
        self
    }

    /// Raw extra bytes (at most 384), for types without a structured form.
    pub fn metadata(mut self, extra: Vec<u8>) -> Self {
        self.meta = Meta::Raw(extra);
        self
    }

    fn primary_arch(&self) -> Option<Arch> {
        match self.meta {
            Meta::Partition(_, PartType::PrimSys, arch)
                if self.data_type == DataType::Partition =>
            {
                Some(arch)
            }
            _ => None,
        }
    }

    /// Extra bytes known before the data is copied.
    fn static_extra(&self) -> Result<[u8; EXTRA_SIZE], SifError> {
        let mut bytes = Vec::new();
        match &self.meta {
            Meta::None | Meta::OciDigest(None) => {}
            Meta::Partition(fs, part, arch) => {
                if !arch.is_known() {
                    return Err(SifError::UnknownArch);
                }
                bytes.extend_from_slice(&fs.raw().to_le_bytes());
                bytes.extend_from_slice(&part.raw().to_le_bytes());
                bytes.extend_from_slice(&arch.code());
            }
            Meta::Signature(hash, fp) => {
                bytes.extend_from_slice(&hash.raw().to_le_bytes());
                bytes.extend_from_slice(fp);
            }
            Meta::CryptoMessage(f, m) => {
                bytes.extend_from_slice(&f.raw().to_le_bytes());
                bytes.extend_from_slice(&m.raw().to_le_bytes());
            }
            Meta::Sbom(f) => bytes.extend_from_slice(&f.raw().to_le_bytes()),
            Meta::OciDigest(Some(d)) => bytes.extend_from_slice(d.as_bytes()),
            Meta::Raw(b) => bytes.extend_from_slice(b),
        }
        to_extra(&bytes)
    }
}

fn to_extra(bytes: &[u8]) -> Result<[u8; EXTRA_SIZE], SifError> {
    if bytes.len() > EXTRA_SIZE {
        return Err(SifError::ExtraTooLarge);
    }
    let mut extra = [0u8; EXTRA_SIZE];
    extra[..bytes.len()].copy_from_slice(bytes);
    Ok(extra)
}

/// Options of [`delete_object_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOptions {
    /// Overwrite the object's data with zeros.
    pub zero: bool,
    /// Truncate free space at the end of the file (objects are never moved).
    pub compact: bool,
    /// Modification time; `None` = now, or the zero time for a deterministic image.
    pub time: Option<i64>,
}

/// Options of [`add_object_with`] and [`set_primary_partition_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ModifyOptions {
    /// Modification time; `None` = now, or the zero time for a deterministic image.
    pub time: Option<i64>,
}

/// The current time in Unix seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `o` rounded up to a multiple of `a` (any positive `a`).
fn aligned(o: i64, a: u64) -> Result<i64, SifError> {
    let a = i64::try_from(a).map_err(|_| SifError::Overflow("alignment"))?;
    if a <= 0 || o % a == 0 {
        return Ok(o);
    }
    o.checked_add(a - o % a)
        .ok_or(SifError::Overflow("aligned offset"))
}

/// An image being changed: the open file plus header and slots in memory.
struct Editor {
    file: File,
    header: Header,
    slots: Vec<Descriptor>,
}

impl Editor {
    fn open(path: &Path) -> Result<Editor, SifError> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let image = Image::load(&mut file)?;
        Ok(Editor {
            file,
            header: image.header().clone(),
            slots: image.slots().to_vec(),
        })
    }

    fn time(&self, explicit: Option<i64>) -> i64 {
        match explicit {
            Some(t) => t,
            None if self.header.is_deterministic() => ZERO_TIME,
            None => now(),
        }
    }

    /// `max(end of used objects) - DataOffset`, as the reference recomputes it.
    fn calculated_data_size(&self) -> i64 {
        self.slots
            .iter()
            .filter(|d| d.used)
            .filter_map(Descriptor::end)
            .max()
            .map_or(0, |end| (end - self.header.data_offset).max(0))
    }

    fn has_primary(&self) -> bool {
        self.slots.iter().any(Descriptor::is_primary_partition)
    }

    /// Copies the object's data into the file and fills slot `slot` (ID `slot + 1`).
    fn write_object(
        &mut self,
        slot: usize,
        input: DescriptorInput,
        t: i64,
    ) -> Result<(), SifError> {
        if input.name.len() > NAME_SIZE {
            return Err(SifError::NameTooLarge);
        }
        let mut extra = input.static_extra()?;
        let primary = input.primary_arch();
        if primary.is_some() && self.has_primary() {
            return Err(SifError::PrimaryPartitionExists);
        }
        let id = u32::try_from(slot + 1).map_err(|_| SifError::InsufficientCapacity)?;
        if self.slots.iter().any(|d| d.used && d.id == id) {
            return Err(SifError::InvalidArgument(format!(
                "object id {id} of the free slot is already in use"
            )));
        }
        let default_align = match input.data_type {
            DataType::Partition => PARTITION_ALIGNMENT,
            _ => 0,
        };
        self.header.data_size = self.calculated_data_size();
        let start = self
            .header
            .data_offset
            .checked_add(self.header.data_size)
            .ok_or(SifError::Overflow("data size"))?;
        let offset = aligned(start, input.alignment.unwrap_or(default_align))?;
        if let DataSource::File(src) = &input.source {
            if same_file(src, &self.file)? {
                return Err(SifError::InvalidArgument(
                    "object data is the image itself".into(),
                ));
            }
        }
        self.file.seek(SeekFrom::Start(offset as u64))?;
        let want_digest = matches!(input.meta, Meta::OciDigest(None));
        let (size, digest) = copy_data(input.source, &mut self.file, want_digest)?;
        if let Some(d) = digest {
            extra = to_extra(format!("sha256:{d}").as_bytes())?;
        }
        let size = i64::try_from(size).map_err(|_| SifError::Overflow("object size"))?;
        let mut name = [0u8; NAME_SIZE];
        name[..input.name.len()].copy_from_slice(&input.name);
        let time = input.time.unwrap_or(t);
        let d = Descriptor {
            data_type: input.data_type,
            used: true,
            id,
            group_raw: input.group | GROUP_MASK,
            link_raw: input.link_raw,
            offset,
            size,
            size_with_padding: offset - start + size,
            created_at: time,
            modified_at: time,
            uid: 0,
            gid: 0,
            name,
            extra,
        };
        self.header.data_size += d.size_with_padding;
        self.header.descriptors_free -= 1;
        if let Some(arch) = primary {
            self.header.arch = arch.code();
        }
        self.slots[slot] = d;
        Ok(())
    }

    /// Writes the whole descriptor table, then the header.
    fn flush(&mut self) -> Result<(), SifError> {
        let mut table = Vec::with_capacity(self.slots.len() * DESCRIPTOR_SIZE);
        for d in &self.slots {
            table.extend_from_slice(&d.to_bytes());
        }
        self.file
            .seek(SeekFrom::Start(self.header.descriptors_offset as u64))?;
        self.file.write_all(&table)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&self.header.to_bytes())?;
        self.file.flush()?;
        Ok(())
    }
}

/// Copies `source` to `out` at its current position; returns the byte count and, if asked,
/// the hex SHA-256 of the data.
fn copy_data(
    source: DataSource,
    out: &mut File,
    digest: bool,
) -> Result<(u64, Option<String>), SifError> {
    match source {
        DataSource::Bytes(b) => {
            out.write_all(&b)?;
            let d = digest.then(|| hex(&Sha256::digest(&b)));
            Ok((b.len() as u64, d))
        }
        // File to file without hashing: the kernel copies (copy_file_range).
        DataSource::File(mut f) if !digest => Ok((io::copy(&mut f, out)?, None)),
        DataSource::File(f) => hashing_copy(f, out),
        DataSource::Reader(r) if !digest => {
            let mut r = r;
            Ok((io::copy(&mut r, out)?, None))
        }
        DataSource::Reader(r) => hashing_copy(r, out),
    }
}

fn hashing_copy<R: Read>(mut r: R, out: &mut File) -> Result<(u64, Option<String>), SifError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((total, Some(hex(&hasher.finalize()))))
}

/// Whether two open files are the same inode (copying an image into itself never ends).
fn same_file(a: &File, b: &File) -> Result<bool, SifError> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (a.metadata()?, b.metadata()?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary path beside `path`, renamed over it once complete.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates an image at `path` holding `inputs` in order (IDs 1, 2, ...). The file is built
/// under a temporary name and renamed into place, so a failure leaves nothing behind.
pub fn create_container(
    path: &Path,
    opts: CreateOptions,
    inputs: Vec<DescriptorInput>,
) -> Result<(), SifError> {
    if opts.launch_script.len() >= 32 {
        return Err(SifError::LaunchScriptTooLarge);
    }
    if inputs.len() > opts.capacity as usize {
        return Err(SifError::InsufficientCapacity);
    }
    let tmp = temp_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&tmp)?;
    let result = fill_new(file, opts, inputs).and_then(|()| Ok(fs::rename(&tmp, path)?));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn fill_new(file: File, opts: CreateOptions, inputs: Vec<DescriptorInput>) -> Result<(), SifError> {
    let t = opts.time.unwrap_or_else(now);
    let id = opts.id.unwrap_or_else(uuid::Uuid::new_v4);
    let mut launch_script = [0u8; 32];
    launch_script[..opts.launch_script.len()].copy_from_slice(opts.launch_script.as_bytes());
    let total = i64::from(opts.capacity);
    let descriptors_size = total * DESCRIPTOR_SIZE as i64;
    let header = Header {
        launch_script,
        magic: MAGIC,
        version: VERSION,
        arch: Arch::NONE.code(),
        id: id.into_bytes(),
        created_at: t,
        modified_at: t,
        descriptors_free: total,
        descriptors_total: total,
        descriptors_offset: DESCRIPTORS_OFFSET,
        descriptors_size,
        data_offset: DESCRIPTORS_OFFSET + descriptors_size,
        data_size: 0,
    };
    let mut ed = Editor {
        file,
        header,
        slots: vec![Descriptor::empty(); opts.capacity as usize],
    };
    for (slot, input) in inputs.into_iter().enumerate() {
        ed.write_object(slot, input, t)?;
    }
    ed.flush()?;
    ed.file.sync_all()?;
    debug_assert!(HEADER_SIZE <= DESCRIPTORS_OFFSET as usize);
    Ok(())
}

/// Adds one object to an existing image, in the first free slot, after the last object.
pub fn add_object(path: &Path, input: DescriptorInput) -> Result<(), SifError> {
    add_object_with(path, input, ModifyOptions::default())
}

/// [`add_object`] with an explicit time. Returns nothing; the new ID is the first free slot.
pub fn add_object_with(
    path: &Path,
    input: DescriptorInput,
    opts: ModifyOptions,
) -> Result<(), SifError> {
    let mut ed = Editor::open(path)?;
    let slot = ed
        .slots
        .iter()
        .position(|d| !d.used)
        .ok_or(SifError::InsufficientCapacity)?;
    let t = ed.time(opts.time);
    let old_len = ed.file.metadata()?.len();
    let result = ed.write_object(slot, input, t).and_then(|()| {
        ed.header.modified_at = t;
        ed.flush()
    });
    if result.is_err() {
        // Descriptors and header are written last, so cutting the data keeps the image valid.
        let _ = ed.file.set_len(old_len);
    }
    result
}

/// Deletes object `id` (no zeroing, no compaction, as `siftool del`).
pub fn delete_object(path: &Path, id: u32) -> Result<(), SifError> {
    delete_object_with(path, id, DeleteOptions::default())
}

/// Deletes object `id`: optionally zeroes its data and truncates free space at the end.
pub fn delete_object_with(path: &Path, id: u32, opts: DeleteOptions) -> Result<(), SifError> {
    delete_objects(path, |d| d.id == id, opts).map(drop)
}

/// Deletes every used object `select` picks; returns how many. "object not found" if none.
pub fn delete_objects<F: Fn(&Descriptor) -> bool>(
    path: &Path,
    select: F,
    opts: DeleteOptions,
) -> Result<usize, SifError> {
    let mut ed = Editor::open(path)?;
    let chosen: Vec<usize> = (0..ed.slots.len())
        .filter(|&i| ed.slots[i].used && select(&ed.slots[i]))
        .collect();
    if chosen.is_empty() {
        return Err(SifError::ObjectNotFound);
    }
    for &slot in &chosen {
        let d = ed.slots[slot].clone();
        if opts.zero {
            ed.file.seek(SeekFrom::Start(d.offset as u64))?;
            io::copy(&mut io::repeat(0).take(d.size as u64), &mut ed.file)?;
        }
        ed.header.descriptors_free += 1;
        if d.is_primary_partition() {
            ed.header.arch = Arch::NONE.code();
        }
        ed.slots[slot] = Descriptor::empty();
    }
    ed.header.modified_at = ed.time(opts.time);
    if opts.compact {
        ed.header.data_size = ed.calculated_data_size();
        let end = (ed.header.data_offset + ed.header.data_size) as u64;
        if end < ed.file.metadata()?.len() {
            ed.file.set_len(end)?;
        }
    }
    ed.flush()?;
    Ok(chosen.len())
}

/// Replaces the type-specific metadata (`Extra`, at most 384 bytes) of object `id`.
pub fn set_metadata(
    path: &Path,
    id: u32,
    extra: &[u8],
    opts: ModifyOptions,
) -> Result<(), SifError> {
    set_extra(path, id, extra, opts, |_| Ok(()))
}

/// Records `digest` (`sha256:<hex>`) as the digest of OCI root index or blob object `id`.
pub fn set_oci_blob_digest(
    path: &Path,
    id: u32,
    digest: &str,
    opts: ModifyOptions,
) -> Result<(), SifError> {
    set_extra(path, id, digest.as_bytes(), opts, |d| match d.data_type {
        DataType::OciBlob | DataType::OciRootIndex => Ok(()),
        _ => Err(SifError::InvalidArgument(
            "object is not an OCI blob".into(),
        )),
    })
}

fn set_extra<F: Fn(&Descriptor) -> Result<(), SifError>>(
    path: &Path,
    id: u32,
    extra: &[u8],
    opts: ModifyOptions,
    check: F,
) -> Result<(), SifError> {
    let extra = to_extra(extra)?;
    let mut ed = Editor::open(path)?;
    let slot = ed
        .slots
        .iter()
        .position(|d| d.used && d.id == id)
        .ok_or(SifError::ObjectNotFound)?;
    check(&ed.slots[slot])?;
    let t = ed.time(opts.time);
    ed.slots[slot].extra = extra;
    ed.slots[slot].modified_at = t;
    ed.header.modified_at = t;
    ed.flush()
}

/// Makes partition `id` the primary system partition (the old one becomes a system partition).
pub fn set_primary_partition(path: &Path, id: u32) -> Result<(), SifError> {
    set_primary_partition_with(path, id, ModifyOptions::default())
}

/// [`set_primary_partition`] with an explicit time.
pub fn set_primary_partition_with(
    path: &Path,
    id: u32,
    opts: ModifyOptions,
) -> Result<(), SifError> {
    let mut ed = Editor::open(path)?;
    let slot = ed
        .slots
        .iter()
        .position(|d| d.used && d.id == id)
        .ok_or(SifError::ObjectNotFound)?;
    let meta = ed.slots[slot].partition().ok_or(SifError::NotPartition)?;
    match meta.part_type {
        PartType::PrimSys => return Ok(()),
        PartType::System => {}
        _ => return Err(SifError::NotSystemPartition),
    }
    let t = ed.time(opts.time);
    if let Some(old) = ed.slots.iter().position(Descriptor::is_primary_partition) {
        set_part_type(&mut ed.slots[old], PartType::System, t);
    }
    set_part_type(&mut ed.slots[slot], PartType::PrimSys, t);
    ed.header.arch = meta.arch.code();
    ed.header.modified_at = t;
    ed.flush()
}

fn set_part_type(d: &mut Descriptor, part: PartType, t: i64) {
    d.extra[4..8].copy_from_slice(&part.raw().to_le_bytes());
    d.modified_at = t;
}
