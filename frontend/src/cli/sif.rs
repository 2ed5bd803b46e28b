//! `apptainer sif` (alias `siftool`): show and change SIF images with the reference siftool's
//! sub-commands, flags and exact output formats (`header`, `list`, `info`, `dump`, `new`,
//! `add`, `del`, `setprim`).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ::sif::write::{self, CreateOptions, DataSource, DescriptorInput};
use ::sif::{Arch, DataType, Descriptor, FsType, HashType, Header, Image, Link, PartType};
use ::sif::{SbomFormat, ZERO_TIME};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use super::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(about = "Manipulate Singularity Image Format (SIF) images")]
pub struct Args {
    #[command(subcommand)]
    pub command: SifCommand,
}

#[derive(Subcommand, Debug)]
pub enum SifCommand {
    /// Add data object
    #[command(
        long_about = "Add a data object to a SIF image.",
        after_help = "Examples:\n  apptainer sif add image.sif recipe.def --datatype 1\n  \
            apptainer sif add image.sif rootfs.squashfs --datatype 4 --parttype 1 --partfs 1 --partarch 2\n  \
            apptainer sif add image.sif signature.bin --datatype 5 --signentity 433FE984155206BD962725E20E8713472A879943 --signhash 1"
    )]
    Add(AddArgs),
    /// Delete data object
    #[command(long_about = "Delete a data object from a SIF image.")]
    Del(IdArgs),
    /// Dump data object
    #[command(long_about = "Dump a data object from a SIF image.")]
    Dump(IdArgs),
    /// Display global header
    #[command(long_about = "Display global header from a SIF image.")]
    Header(PathArgs),
    /// Display data object info
    #[command(long_about = "Display info about a data object from a SIF image.")]
    Info(IdArgs),
    /// List data objects
    #[command(long_about = "List data objects from a SIF image.")]
    List(PathArgs),
    /// Create SIF image
    #[command(long_about = "Create a new, empty SIF image.")]
    New(PathArgs),
    /// Set primary system partition
    #[command(long_about = "Set the primary system partition in a SIF image.")]
    Setprim(IdArgs),
}

#[derive(clap::Args, Debug)]
pub struct PathArgs {
    #[arg(value_name = "sif_path")]
    pub path: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct IdArgs {
    #[arg(value_name = "id")]
    pub id: String,
    #[arg(value_name = "sif_path")]
    pub path: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[arg(value_name = "sif_path")]
    pub path: PathBuf,
    #[arg(value_name = "object_path")]
    pub object: PathBuf,
    /// the type of data to add [NEEDED, no default]: 1-Deffile, 2-EnvVar, 3-Labels,
    /// 4-Partition, 5-Signature, 6-GenericJSON, 7-Generic, 8-CryptoMessage, 9-SBOM,
    /// 10-OCI.RootIndex, 11-OCI.Blob
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub datatype: i64,
    /// the type of partition (with --datatype 4-Partition) [NEEDED, no default]:
    /// 1-System, 2-PrimSys, 3-Data, 4-Overlay
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub parttype: i32,
    /// the filesystem used (with --datatype 4-Partition) [NEEDED, no default]:
    /// 1-Squash, 2-Ext3, 3-ImmuObj, 4-Raw
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub partfs: i32,
    /// the main architecture used (with --datatype 4-Partition) [NEEDED, no default]:
    /// 1-386, 2-amd64, 3-arm, 4-arm64, 5-ppc64, 6-ppc64le, 7-mips, 8-mipsle, 9-mips64,
    /// 10-mips64le, 11-s390x, 12-riscv64, 13-loong64
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub partarch: i32,
    /// the signature hash used (with --datatype 5-Signature) [NEEDED, no default]:
    /// 1-SHA256, 2-SHA384, 3-SHA512, 4-BLAKE2s_256, 5-BLAKE2b_256
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub signhash: i32,
    /// the entity that signs (with --datatype 5-Signature) [NEEDED, no default]:
    /// example: 433FE984155206BD962725E20E8713472A879943
    #[arg(long, default_value = "")]
    pub signentity: String,
    /// the SBOM format (with --datatype 9-sbom): cyclonedx-json, cyclonedx-xml, github-json,
    /// spdx-json, spdx-rdf, spdx-tag-value, spdx-yaml, syft-json
    #[arg(long, default_value = "")]
    pub sbomformat: String,
    /// set groupid [default: 0]
    #[arg(long, default_value_t = 0)]
    pub groupid: u32,
    /// set link pointer [default: 0]
    #[arg(long)]
    pub link: Option<u32>,
    /// set alignment [default: 4096 with --datatype 4-Partition, 0 otherwise]
    #[arg(long, allow_negative_numbers = true)]
    pub alignment: Option<i64>,
    /// set logical filename/handle [default: input filename]
    #[arg(long)]
    pub filename: Option<String>,
}

/// Lets unit tests parse `sif` command lines on their own.
#[derive(Parser, Debug)]
struct Standalone {
    #[command(subcommand)]
    command: SifCommand,
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    let mut out = io::stdout().lock();
    match args.command {
        SifCommand::Header(a) => {
            out.write_all(render_header(load(&a.path)?.0.header()).as_bytes())?
        }
        SifCommand::List(a) => out.write_all(&render_list(&load(&a.path)?.0))?,
        SifCommand::Info(a) => {
            let id = parse_id(&a.id)?;
            let (image, _) = load(&a.path)?;
            out.write_all(render_info(image.descriptor(id)?)?.as_bytes())?;
        }
        SifCommand::Dump(a) => {
            let id = parse_id(&a.id)?;
            let (image, mut file) = load(&a.path)?;
            io::copy(&mut image.object_reader(&mut file, id)?, &mut out)?;
        }
        SifCommand::New(a) => write::create_container(&a.path, CreateOptions::default(), vec![])
            .with_context(|| format!("failed to create {}", a.path.display()))?,
        SifCommand::Add(a) => add(a)?,
        SifCommand::Del(a) => {
            let id = parse_id(&a.id)?;
            write::delete_object(&a.path, id).with_context(|| {
                format!("failed to delete object {id} from {}", a.path.display())
            })?
        }
        SifCommand::Setprim(a) => {
            let id = parse_id(&a.id)?;
            write::set_primary_partition(&a.path, id).with_context(|| {
                format!("failed to set primary partition of {}", a.path.display())
            })?
        }
    }
    out.flush()?;
    Ok(())
}

fn load(path: &Path) -> Result<(Image, File)> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let image = Image::load(&mut file)
        .with_context(|| format!("failed to load image {}", path.display()))?;
    Ok((image, file))
}

fn parse_id(s: &str) -> Result<u32> {
    s.parse()
        .with_context(|| format!("failed to parse id {s:?}: not a 32-bit unsigned number"))
}

// ---- add ----

fn data_type(n: i64) -> Result<DataType> {
    match n {
        1..=11 => Ok(DataType::from_raw(0x4000 + n as i32)),
        _ => bail!("--datatype flag is required with a valid range (1-11)"),
    }
}

fn hash_type(n: i32) -> Result<HashType> {
    match n {
        1..=5 => Ok(HashType::from_raw(n)),
        _ => bail!("invalid hash type: {n}"),
    }
}

fn fingerprint(hex: &str) -> Result<[u8; 20]> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        bail!("failed to decode signing entity fingerprint: invalid hex {hex:?}");
    }
    if hex.len() != 40 {
        bail!(
            "invalid signing entity fingerprint length: got {}, want 20",
            hex.len() / 2
        );
    }
    let mut fp = [0u8; 20];
    for (i, b) in fp.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(fp)
}

fn add(a: AddArgs) -> Result<()> {
    let dt = data_type(a.datatype)?;
    let file =
        File::open(&a.object).with_context(|| format!("failed to open {}", a.object.display()))?;
    let mut input = DescriptorInput::new(dt, DataSource::File(file)).group(a.groupid);
    if let Some(link) = a.link {
        if link == 0 {
            bail!("invalid linked id: 0");
        }
        input = input.link(link);
    }
    if let Some(al) = a.alignment {
        input = input.alignment(al.max(0) as u64);
    }
    if let Some(name) = &a.filename {
        input = input.name(name);
    }
    input = match dt {
        DataType::Partition => {
            if a.parttype == 0 || a.partfs == 0 || a.partarch == 0 {
                bail!(
                    "with partition datatype, --partfs, --parttype and --partarch must be passed"
                );
            }
            let arch = usize::try_from(a.partarch)
                .ok()
                .and_then(Arch::from_index)
                .context("unknown architecture")?;
            input.partition(
                FsType::from_raw(a.partfs),
                PartType::from_raw(a.parttype),
                arch,
            )
        }
        DataType::Signature => {
            let fp = fingerprint(&a.signentity)?;
            input.signature(hash_type(a.signhash)?, fp)
        }
        DataType::Sbom => {
            if a.sbomformat.is_empty() {
                bail!("with SBOM datatype, --sbomformat must be passed");
            }
            let f = SbomFormat::from_name(&a.sbomformat)
                .with_context(|| format!("invalid SBOM format: {}", a.sbomformat))?;
            input.sbom(f)
        }
        _ => input,
    };
    write::add_object(&a.path, input)
        .with_context(|| format!("failed to add object to {}", a.path.display()))
}

// ---- output formats ----

/// Go's `text/tabwriter` (no flags, padding with spaces): `text` is lines of tab-terminated
/// cells. A cell is padded to the widest cell of its column block (the run of adjacent
/// lines that have a cell in that column) plus `padding`; the text after a line's last tab
/// is not aligned. Values with embedded newlines thus end a block, as in siftool.
fn tabwriter(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    // widths[line][column] for every tab-terminated cell.
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len() - 1]).collect();
    let cols = lines.iter().map(|l| l.len() - 1).max().unwrap_or(0);
    for c in 0..cols {
        let mut start = 0;
        while start < lines.len() {
            if lines[start].len() - 1 <= c {
                start += 1;
                continue;
            }
            let end = (start..lines.len())
                .find(|&i| lines[i].len() - 1 <= c)
                .unwrap_or(lines.len());
            let w = (start..end)
                .map(|i| lines[i][c].chars().count() + padding)
                .max()
                .unwrap_or(0);
            for row in &mut widths[start..end] {
                row[c] = w;
            }
            start = end;
        }
    }
    let mut out = String::new();
    for (line, ws) in lines.iter().zip(&widths) {
        for (cell, w) in line.iter().zip(ws) {
            out.push_str(&format!("{cell:<w$}"));
        }
        out.push_str(line[line.len() - 1]);
        out.push('\n');
    }
    out
}

/// Sizes as siftool shows them: `N B`, or KiB..EiB rounded half away from zero.
fn readable_size(size: i64) -> String {
    if -1024 < size && size < 1024 {
        return format!("{size} B");
    }
    let units = ['K', 'M', 'G', 'T', 'P', 'E'];
    let (mut div, mut exp) = (1024u64, 0usize);
    let mut n = size / 1024;
    while n <= -1024 || n >= 1024 {
        div *= 1024;
        exp += 1;
        n /= 1024;
    }
    format!("{:.0} {}iB", (size as f64 / div as f64).round(), units[exp])
}

/// A Unix time as Go prints a UTC `time.Time`: `2006-01-02 15:04:05 +0000 UTC`.
fn go_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    };
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn render_header(h: &Header) -> String {
    let mut text = String::new();
    let mut row = |k: &str, v: String| text.push_str(&format!("{k}:\t{v}\n"));
    let script = String::from_utf8_lossy(h.launch_script()).into_owned();
    if !script.is_empty() {
        row(
            "Launch Script",
            script.strip_suffix('\n').unwrap_or(&script).to_string(),
        );
    }
    row("Version", h.version_str());
    if h.arch().is_known() {
        row("Primary Architecture", h.arch().to_string());
    }
    if !h.id_is_nil() {
        row("ID", h.id_string());
    }
    if h.created_at != ZERO_TIME {
        row("Created At", go_time(h.created_at));
    }
    if h.modified_at != ZERO_TIME {
        row("Modified At", go_time(h.modified_at));
    }
    row("Descriptors Free", h.descriptors_free.to_string());
    row("Descriptors Total", h.descriptors_total.to_string());
    row("Descriptors Offset", h.descriptors_offset.to_string());
    row("Descriptors Size", readable_size(h.descriptors_size));
    row("Data Offset", h.data_offset.to_string());
    row("Data Size", readable_size(h.data_size));
    tabwriter(&text, 1)
}

fn group_str(d: &Descriptor) -> String {
    match d.group() {
        0 => "NONE".into(),
        g => g.to_string(),
    }
}

fn valid_hash(h: HashType) -> bool {
    !matches!(h, HashType::Unknown(_))
}

fn render_list(image: &Image) -> Vec<u8> {
    let rule = "-".repeat(78);
    let mut out = format!(
        "{rule}\n{:<4} {:<8} {:<8} {:<26} {}\n{rule}\n",
        "ID", "|GROUP", "|LINK", "|SIF POSITION (start-end)", "|TYPE"
    );
    for d in image.descriptors() {
        out.push_str(&format!("{:<4} |{:<7} ", d.id, group_str(d)));
        match d.link() {
            Link::None => out.push_str(&format!("|{:<7} ", "NONE")),
            Link::Group(g) => out.push_str(&format!("|{g:<3} (G) ")),
            Link::Object(o) => out.push_str(&format!("|{o:<7} ")),
        }
        // Offsets were checked by the loader, so the sum cannot overflow.
        let pos = format!("|{}-{} ", d.offset, d.offset + d.size);
        out.push_str(&format!("{pos:<26} "));
        let dt = d.data_type;
        if let Some(p) = d.partition() {
            out.push_str(&format!(
                "|{dt} ({}/{}/{})\n",
                p.fs_type, p.part_type, p.arch
            ));
        } else if let Some(s) = d.signature() {
            // siftool prints nothing, not even the newline, for an unsupported hash.
            if valid_hash(s.hash) {
                out.push_str(&format!("|{dt} ({})\n", s.hash));
            }
        } else if let Some((f, m)) = d.crypto_message() {
            out.push_str(&format!("|{dt} ({f}/{m})\n"));
        } else if let Some(f) = d.sbom_format() {
            out.push_str(&format!("|{dt} ({f})\n"));
        } else {
            out.push_str(&format!("|{dt}\n"));
        }
    }
    out.into_bytes()
}

/// Checks `sha256:<64 hex>` as the reference's digest parser does.
fn valid_digest(s: &str) -> bool {
    match s.split_once(':') {
        Some(("sha256", hex)) => {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        }
        _ => false,
    }
}

fn render_info(d: &Descriptor) -> Result<String> {
    let mut text = String::new();
    let mut row = |k: &str, v: String| text.push_str(&format!("\t{k}:\t{v}\n"));
    row("Data Type", d.data_type.to_string());
    row("ID", d.id.to_string());
    row("Group ID", group_str(d));
    row(
        "Linked ID",
        match d.link() {
            Link::None => "NONE".into(),
            Link::Group(g) => format!("{g} (G)"),
            Link::Object(o) => o.to_string(),
        },
    );
    row("Offset", d.offset.to_string());
    row("Size", d.size.to_string());
    if d.created_at != ZERO_TIME {
        row("Created At", go_time(d.created_at));
    }
    if d.modified_at != ZERO_TIME {
        row("Modified At", go_time(d.modified_at));
    }
    let name = d.name();
    if !name.is_empty() {
        row("Name", name);
    }
    if let Some(p) = d.partition() {
        row("Filesystem Type", p.fs_type.to_string());
        row("Partition Type", p.part_type.to_string());
        row("Architecture", p.arch.to_string());
    } else if let Some(s) = d.signature() {
        if !valid_hash(s.hash) {
            bail!("hash algorithm unsupported");
        }
        row("Hash Type", s.hash.to_string());
        if let Some(fp) = s.fingerprint {
            row("Entity", fp.iter().map(|b| format!("{b:02X}")).collect());
        }
    } else if let Some((f, m)) = d.crypto_message() {
        row("Format Type", f.to_string());
        row("Message Type", m.to_string());
    } else if let Some(f) = d.sbom_format() {
        row("Format", f.to_string());
    } else if let Some(digest) = d.oci_digest() {
        if !valid_digest(&digest) {
            bail!("invalid OCI digest {digest:?}");
        }
        row("Digest", digest);
    }
    Ok(tabwriter(&text, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_siftool() {
        assert_eq!(readable_size(0), "0 B");
        assert_eq!(readable_size(1023), "1023 B");
        assert_eq!(readable_size(28080), "27 KiB");
        assert_eq!(readable_size(8784), "9 KiB");
        assert_eq!(readable_size(1536), "2 KiB");
        assert_eq!(readable_size(3 << 30), "3 GiB");
    }

    #[test]
    fn tabwriter_blocks_end_at_lines_without_cells() {
        let text = "Launch Script:\t#!/bin/sh\nexec x\nVersion:\t01\nDescriptors Free:\t48\n";
        let want = "Launch Script: #!/bin/sh\nexec x\nVersion:          01\nDescriptors Free: 48\n";
        assert_eq!(tabwriter(text, 1), want);
        assert_eq!(tabwriter("\tA:\t1\n\tBB:\t2\n", 2), "  A:   1\n  BB:  2\n");
    }

    #[test]
    fn times_as_go() {
        assert_eq!(go_time(1_593_475_316), "2020-06-30 00:01:56 +0000 UTC");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time(946_702_800), "2000-01-01 05:00:00 +0000 UTC");
        assert_eq!(go_time(-1), "1969-12-31 23:59:59 +0000 UTC");
    }

    #[test]
    fn add_flags_parse() {
        let s = Standalone::try_parse_from([
            "sif",
            "add",
            "a.sif",
            "b",
            "--datatype",
            "4",
            "--partfs",
            "1",
            "--parttype",
            "2",
            "--partarch",
            "2",
            "--groupid",
            "1",
        ])
        .unwrap();
        let SifCommand::Add(a) = s.command else {
            panic!("not add")
        };
        assert_eq!(
            (a.datatype, a.partfs, a.parttype, a.partarch, a.groupid),
            (4, 1, 2, 2, 1)
        );
        assert!(a.link.is_none() && a.alignment.is_none() && a.filename.is_none());
    }

    #[test]
    fn fingerprints() {
        let fp = fingerprint("12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84").unwrap();
        assert_eq!(fp[0], 0x12);
        assert!(fingerprint("1234").is_err());
        assert!(fingerprint("zz").is_err());
    }
}
