//! Writing the merged tree to an output (a tar stream for the squashfs, or a directory).
//!
//! Order: every directory, symlink, device and generated file first (parents before
//! children), then the regular files layer by layer in the order their layer stores
//! them, so each layer is decompressed once more and never held in memory, then the
//! extra names of hardlinked files, pointing at the first name already written.

use std::collections::HashMap;
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

/// A regular file whose data is in a layer.
struct Pending {
    path: Vec<u8>,
    inode: InodeId,
}

/// Streams `tree` into `sink`, reading file data from the layers.
pub fn emit(tree: &Tree, open: &OpenLayer<'_>, layers: usize, sink: &mut dyn Sink) -> Result<()> {
    let mut first_name: HashMap<InodeId, Vec<u8>> = HashMap::new();
    let mut links: Vec<(Vec<u8>, InodeId)> = Vec::new();
    let mut per_layer: Vec<Vec<(u32, Pending)>> = (0..layers).map(|_| Vec::new()).collect();

    for (path, node) in tree.walk() {
        let id = tree.inode_of(node);
        let inode = tree.inode(id);
        if !matches!(inode.kind, Kind::Dir) {
            if first_name.contains_key(&id) {
                links.push((path, id));
                continue;
            }
            first_name.insert(id, path.clone());
        }
        match &inode.kind {
            Kind::Dir => sink.dir(&path, &inode.meta)?,
            Kind::Symlink(target) => sink.symlink(&path, &inode.meta, target)?,
            Kind::File {
                source: Source::Inline(data),
                ..
            } => sink.file(&path, &inode.meta, data.len() as u64, &mut data.as_slice())?,
            Kind::File {
                source: Source::Layer { layer, entry },
                ..
            } => per_layer[*layer as usize].push((*entry, Pending { path, inode: id })),
            Kind::Char { .. } | Kind::Block { .. } | Kind::Fifo => {
                sink.special(&path, &inode.meta, &inode.kind)?
            }
        }
    }

    for (i, mut wanted) in per_layer.into_iter().enumerate() {
        if wanted.is_empty() {
            continue;
        }
        wanted.sort_by_key(|(ordinal, _)| *ordinal);
        read_wanted(open(i)?, &wanted, |p, size, data| {
            sink.file(&p.path, &tree.inode(p.inode).meta, size, data)
        })?;
    }

    for (path, id) in links {
        sink.hardlink(&path, &first_name[&id])?;
    }
    sink.finish()
}
