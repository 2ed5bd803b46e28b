//! Reading an image archive (a `docker save` tar, plain or compressed, or a tar of an OCI
//! layout) in one sequential pass: large members stream into the blob cache, hashed on the
//! way; small ones (manifests, configs, index) stay in memory up to a fixed budget. The
//! archive is never unpacked to disk and no member is ever held whole in memory if large.

use crate::cache::{BlobRef, Cache};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Members up to this size are kept in memory.
const SMALL_MEMBER: u64 = 1 << 20;
/// At most this much is kept in memory in total; beyond it members go to the cache.
const SMALL_BUDGET: u64 = 16 << 20;

/// The members of an archive, by normalised path.
#[derive(Default)]
pub struct Ingested {
    small: HashMap<String, Vec<u8>>,
    stored: HashMap<String, BlobRef>,
    links: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}: not a tar archive ({1})")]
pub struct NotATar(pub String, pub String);

impl Ingested {
    /// Reads `reader` (plain, gzip or zstd tar). `label` names it in errors.
    pub fn read(reader: impl Read + 'static, label: &str, cache: &Cache) -> Result<Ingested> {
        let mut buffered = BufReader::with_capacity(256 * 1024, reader);
        let magic = buffered
            .fill_buf()
            .with_context(|| format!("reading {label}"))?
            .to_vec();
        let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::Decoder::with_buffer(buffered).context("starting zstd decoder")?)
        } else {
            Box::new(buffered)
        };
        let mut out = Ingested::default();
        out.read_tar(decoded, label, cache)?;
        if out.small.is_empty() && out.stored.is_empty() {
            bail!(NotATar(label.into(), "no files in it".into()));
        }
        Ok(out)
    }

    fn read_tar(&mut self, reader: Box<dyn Read>, label: &str, cache: &Cache) -> Result<()> {
        let not_tar = |e: std::io::Error| anyhow!(NotATar(label.into(), e.to_string()));
        let mut archive = tar::Archive::new(reader);
        let mut in_memory = 0u64;
        for entry in archive.entries().map_err(not_tar)? {
            let mut entry = entry.map_err(not_tar)?;
            let path = normalise(&entry.path().map_err(not_tar)?.to_string_lossy());
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Some(target) = entry.link_name().map_err(not_tar)? {
                    let target = target.to_string_lossy().into_owned();
                    let resolved = if kind.is_symlink() && !target.starts_with('/') {
                        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        normalise(&format!("{parent}/{target}"))
                    } else {
                        normalise(&target)
                    };
                    self.links.insert(path, resolved);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.header().size().map_err(not_tar)?;
            if size <= SMALL_MEMBER && in_memory + size <= SMALL_BUDGET {
                let mut data = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| anyhow!(NotATar(label.into(), e.to_string())))?;
                in_memory += size;
                self.small.insert(path, data);
            } else {
                let blob = cache
                    .store_unverified(&mut entry)
                    .with_context(|| format!("reading {path} from {label}"))?;
                if blob.size != size {
                    bail!("{label}: member {path} is truncated");
                }
                self.stored.insert(path, blob);
            }
        }
        Ok(())
    }

    fn resolve(&self, path: &str) -> String {
        let mut p = normalise(path);
        for _ in 0..8 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    /// True if the archive has this member.
    pub fn has(&self, path: &str) -> bool {
        let p = self.resolve(path);
        self.small.contains_key(&p) || self.stored.contains_key(&p)
    }

    /// A small member's content (manifests, configs); errors if absent or large.
    pub fn read_small(&self, path: &str) -> Result<&[u8]> {
        let p = self.resolve(path);
        if let Some(data) = self.small.get(&p) {
            return Ok(data);
        }
        if self.stored.contains_key(&p) {
            bail!("{path} is too large for a metadata file");
        }
        bail!("{path} is missing from the archive")
    }

    /// A member as a cached blob (small members are stored on demand).
    pub fn blob(&self, path: &str, cache: &Cache) -> Result<BlobRef> {
        let p = self.resolve(path);
        if let Some(b) = self.stored.get(&p) {
            return Ok(b.clone());
        }
        if let Some(data) = self.small.get(&p) {
            return cache.store_unverified(&mut &data[..]);
        }
        bail!("{path} is missing from the archive")
    }
}

/// `./a//b/` → `a/b`.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Opens an archive file, with a clear error when it is missing or a directory.
pub fn open_archive(path: &Path, label: &str) -> Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{label}: no such file"),
        _ => anyhow!("{label}: {e}"),
    })?;
    if meta.is_dir() {
        bail!("{label}: is a directory, not an archive file");
    }
    std::fs::File::open(path).with_context(|| format!("opening {label}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise("./a//b/"), "a/b");
        assert_eq!(normalise("a/../b"), "b");
        assert_eq!(normalise("/x"), "x");
    }
}
