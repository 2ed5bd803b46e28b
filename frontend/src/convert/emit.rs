//! Writing the merged tree to an output (a tar stream for the squashfs, or a directory).
//!
//! Order: every directory, symlink, device and generated file first (parents before
//! children), then the regular files layer by layer in the order their layer stores
//! them, so each layer is decompressed once more and never held in memory, then the
//! extra names of hardlinked files, pointing at the first name already written.
//! The paths still needed after the walk (files, hardlinks) are kept in one byte arena.

use std::io::Read;

use anyhow::Result;

use super::scan::{read_wanted, OpenLayer};
use super::tree::{InodeId, Kind, Meta, Source, Tree};

/// Where the merged tree goes. Paths are relative to the root, without a leading `./`;
/// the root itself has the empty path and comes first.
pub trait Sink {
    fn dir(&mut self, path: &[u8], meta: &Meta) -> Result<()>;
    fn file(&mut self, path: &[u8], meta: &Meta, size: u64, data: &mut dyn Read) -> Result<()>;
    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> Result<()>;
    /// A character or block device or a fifo (`kind` says which).
    fn special(&mut self, path: &[u8], meta: &Meta, kind: &Kind) -> Result<()>;
    fn hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
}

/// Paths stored back to back; a path is named by its `(start, end)` in the arena.
#[derive(Default)]
struct Paths {
    bytes: Vec<u8>,
}

type PathRef = (u32, u32);

impl Paths {
    fn push(&mut self, p: &[u8]) -> PathRef {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(p);
        (start, self.bytes.len() as u32)
    }
    fn get(&self, r: PathRef) -> &[u8] {
        &self.bytes[r.0 as usize..r.1 as usize]
    }
}

/// Streams `tree` into `sink`, reading file data from the layers.
pub fn emit(tree: &Tree, open: &OpenLayer<'_>, layers: usize, sink: &mut dyn Sink) -> Result<()> {
    let mut paths = Paths::default();
    // The first name written for each inode (hardlinks point at it); u32::MAX = none yet.
    let mut first: Vec<PathRef> = vec![(u32::MAX, 0); tree.inode_count()];
    let mut links: Vec<(PathRef, InodeId)> = Vec::new();
    // Per layer: (entry ordinal, inode, path) of the files whose data it holds.
    let mut per_layer: Vec<Vec<(u32, (InodeId, PathRef))>> =
        (0..layers).map(|_| Vec::new()).collect();

    tree.visit(|path, node| -> Result<()> {
        let id = tree.inode_of(node);
        let inode = tree.inode(id);
        if !matches!(inode.kind, Kind::Dir) {
            if first[id as usize].0 != u32::MAX {
                links.push((paths.push(path), id));
                return Ok(());
            }
            first[id as usize] = paths.push(path);
        }
        match &inode.kind {
            Kind::Dir => sink.dir(path, &inode.meta),
            Kind::Symlink(target) => sink.symlink(path, &inode.meta, target),
            Kind::File {
                source: Source::Inline(index),
                ..
            } => {
                let data = tree.inline(*index);
                sink.file(path, &inode.meta, data.len() as u64, &mut &data[..])
            }
            Kind::File {
                source: Source::Layer { layer, entry },
                ..
            } => {
                per_layer[*layer as usize].push((*entry, (id, first[id as usize])));
                Ok(())
            }
            Kind::Char { .. } | Kind::Block { .. } | Kind::Fifo => {
                sink.special(path, &inode.meta, &inode.kind)
            }
        }
    })?;

    let total: u64 = per_layer
        .iter()
        .flatten()
        .map(|(_, (id, _))| match tree.inode(*id).kind {
            Kind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    let bar = progress_bar(total);
    for (i, mut wanted) in per_layer.into_iter().enumerate() {
        if wanted.is_empty() {
            continue;
        }
        wanted.sort_by_key(|(ordinal, _)| *ordinal);
        read_wanted(open(i)?, &wanted, |(id, path), size, data| {
            sink.file(paths.get(*path), &tree.inode(*id).meta, size, data)?;
            bar.inc(size);
            Ok(())
        })?;
    }
    bar.finish_and_clear();

    for (path, id) in links {
        sink.hardlink(paths.get(path), paths.get(first[id as usize]))?;
    }
    sink.finish()
}

/// A bar of the file bytes written, on a terminal only (`crate::log::progress_enabled`).
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !crate::log::progress_enabled() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{bytes:>10} / {total_bytes:<10} [{wide_bar}] {percent:>3} %",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}
