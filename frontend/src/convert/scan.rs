//! Reading tar layers: headers into the merged tree (first pass), and the data of the
//! surviving files, in archive order, for the output (second pass).
//!
//! Both passes number entries the same way (the tar crate folds PAX and GNU long-name
//! headers into the entry they describe), so `(layer, ordinal)` names one entry.

use std::io::Read;

use anyhow::{Context, Result};
use base64::Engine;

use super::tree::{Entry, EntryKind, Meta, Tree, Xattrs};

/// Opens layer `i` (bottom first) as an uncompressed tar stream.
pub type OpenLayer<'a> = dyn Fn(usize) -> Result<Box<dyn Read + Send>> + 'a;

/// Applies every layer's headers to a new tree.
pub fn build_tree(layers: usize, open: &OpenLayer<'_>) -> Result<Tree> {
    let mut tree = Tree::new();
    for i in 0..layers {
        let layer = u16::try_from(i).context("image has more than 65535 layers")?;
        let reader = open(i)?;
        scan_layer(&mut tree, layer, reader).with_context(|| format!("reading layer {}", i + 1))?;
    }
    Ok(tree)
}

fn scan_layer(tree: &mut Tree, layer: u16, reader: Box<dyn Read + Send>) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    for (ordinal, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        let ordinal = u32::try_from(ordinal).context("layer has more than 2^32 entries")?;
        if let Some(e) = parse_entry(&mut entry)? {
            tree.apply(layer, ordinal, &e);
        }
    }
    Ok(())
}

/// Reduces a tar entry to what the merge needs; `None` for entries that describe no
/// file (global PAX headers, unknown types).
pub fn parse_entry<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Option<Entry>> {
    let header = entry.header();
    let path = entry.path_bytes().into_owned();
    let link = || {
        entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default()
    };
    let device = || -> Result<(u32, u32)> {
        Ok((
            header.device_major()?.unwrap_or(0),
            header.device_minor()?.unwrap_or(0),
        ))
    };
    use tar::EntryType as T;
    let kind = match header.entry_type() {
        // For GNU sparse files the tar crate reports the expanded size and reads the holes
        // as zeros, so they become plain files.
        T::Regular | T::Continuous | T::GNUSparse => EntryKind::File { size: entry.size() },
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink(link()),
        T::Link => EntryKind::Hardlink(link()),
        T::Char => {
            let (major, minor) = device()?;
            EntryKind::Char { major, minor }
        }
        T::Block => {
            let (major, minor) = device()?;
            EntryKind::Block { major, minor }
        }
        T::Fifo => EntryKind::Fifo,
        _ => return Ok(None),
    };
    let meta = Meta {
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        uid: id32(header.uid().unwrap_or(0)),
        gid: id32(header.gid().unwrap_or(0)),
        mtime: header.mtime().map(|t| t as i64).unwrap_or(0),
        xattrs: None,
    };
    let mut e = Entry { path, kind, meta };
    e.meta.xattrs = read_xattrs(entry)?;
    Ok(Some(e))
}

/// Ids above 32 bits cannot exist on Linux; such an entry gets the overflow id.
fn id32(id: u64) -> u32 {
    u32::try_from(id).unwrap_or(65534)
}

/// Extended attributes from `SCHILY.xattr.*` (GNU tar, Docker) and
/// `LIBARCHIVE.xattr.*` (base64) PAX records.
fn read_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Option<Box<Xattrs>>> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(None);
    };
    for ext in exts {
        let ext = ext?;
        let key = ext.key_bytes();
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            out.push((name.to_vec(), ext.value_bytes().to_vec()));
        } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
            if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(ext.value_bytes()) {
                out.push((name.to_vec(), v));
            }
        }
    }
    Ok((!out.is_empty()).then(|| Box::new(out)))
}

/// Calls `f` with the data of the wanted entries of one layer. `wanted` must be sorted
/// by ordinal; reading stops after the last wanted entry.
pub fn read_wanted<T>(
    reader: Box<dyn Read + Send>,
    wanted: &[(u32, T)],
    mut f: impl FnMut(&T, u64, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut archive = tar::Archive::new(reader);
    let mut next = 0;
    for (ordinal, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        while next < wanted.len() && (wanted[next].0 as usize) == ordinal {
            let size = entry.size();
            f(&wanted[next].1, size, &mut entry)?;
            next += 1;
        }
        if next == wanted.len() {
            return Ok(());
        }
    }
    anyhow::bail!(
        "layer ended before entry {} (it changed between two reads)",
        wanted[next].0
    )
}
