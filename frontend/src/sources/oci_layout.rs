//! OCI image layouts (`oci:DIR[:tag]`) and tars of them (`oci-archive:FILE[:tag]`, and
//! `docker save` output that is itself a layout). The tag selects the index entry whose
//! `org.opencontainers.image.ref.name` matches; without a tag the layout must hold one image.

use super::ingest::Ingested;
use crate::cache::{BlobRef, BlobSlot, Cache, Digest};
use crate::oci::{FetchedImage, Layer};
use crate::registry::manifest::{self, Descriptor, Parsed};
use crate::registry::{config_platform, read_config, Platform};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MAX_METADATA: u64 = 8 << 20;

/// Read access to a layout's files, wherever they are.
pub trait LayoutFiles {
    fn has(&self, path: &str) -> bool;
    fn read_small(&self, path: &str) -> Result<Vec<u8>>;
    /// The blob with this digest, copied into the cache and verified.
    fn blob(&self, digest: &Digest, size: u64, cache: &Cache) -> Result<BlobRef>;
}

/// A layout on disk.
pub struct DirLayout(pub PathBuf);

impl LayoutFiles for DirLayout {
    fn has(&self, path: &str) -> bool {
        self.0.join(path).exists()
    }

    fn read_small(&self, path: &str) -> Result<Vec<u8>> {
        let p = self.0.join(path);
        let meta = std::fs::metadata(&p).with_context(|| format!("{}", p.display()))?;
        if meta.len() > MAX_METADATA {
            bail!("{} is too large for a metadata file", p.display());
        }
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    }

    fn blob(&self, digest: &Digest, size: u64, cache: &Cache) -> Result<BlobRef> {
        let src = self.0.join("blobs/sha256").join(digest.hex());
        let mut file = std::fs::File::open(&src)
            .with_context(|| format!("blob {digest} is missing from the layout"))?;
        match cache.begin_blob(digest, Some(size))? {
            BlobSlot::Present(b) => Ok(b),
            BlobSlot::Missing(mut w) => {
                w.fill(&mut file, &|_| {})
                    .with_context(|| format!("{}", src.display()))?;
                w.commit()
            }
        }
    }
}

impl LayoutFiles for Ingested {
    fn has(&self, path: &str) -> bool {
        Ingested::has(self, path)
    }

    fn read_small(&self, path: &str) -> Result<Vec<u8>> {
        Ok(Ingested::read_small(self, path)?.to_vec())
    }

    fn blob(&self, digest: &Digest, size: u64, cache: &Cache) -> Result<BlobRef> {
        let b = Ingested::blob(self, &format!("blobs/sha256/{}", digest.hex()), cache)?;
        if &b.digest != digest {
            bail!(
                "blob {digest} in the archive is corrupt: digest mismatch (got {})",
                b.digest
            );
        }
        if b.size != size {
            bail!(
                "blob {digest} in the archive is corrupt: size {} instead of {size}",
                b.size
            );
        }
        Ok(b)
    }
}

/// True if these files form an OCI layout.
pub fn is_layout(files: &dyn LayoutFiles) -> bool {
    files.has("oci-layout") && files.has("index.json")
}

/// Selects the image (by tag, then platform) and brings its blobs into the cache.
pub fn fetch(
    files: &dyn LayoutFiles,
    tag: Option<&str>,
    platform: &Platform,
    label: &str,
    cache: &Cache,
) -> Result<FetchedImage> {
    if !files.has("oci-layout") {
        bail!("{label}: not an OCI image layout (no oci-layout file)");
    }
    let index = files
        .read_small("index.json")
        .with_context(|| label.to_string())?;
    let Parsed::Index(entries) = manifest::parse(&index, Some(manifest::OCI_INDEX), label)
        .with_context(|| format!("{label}: index.json"))?
    else {
        bail!("{label}: index.json is not an image index");
    };
    let entry = pick_entry(&entries, tag, label)?;
    let (digest, image) = resolve(files, entry, platform, label)?;
    let config_blob = files.blob(
        &Digest::parse(&image.config.digest)?,
        image.config.size,
        cache,
    )?;
    let config = read_config(&config_blob)?;
    let mut layers = Vec::with_capacity(image.layers.len());
    for desc in &image.layers {
        let blob = files.blob(&Digest::parse(&desc.digest)?, desc.size, cache)?;
        layers.push(Layer {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type: desc.media_type.clone(),
            path: blob.path,
        });
    }
    Ok(FetchedImage {
        reference: label.to_string(),
        manifest_digest: digest.to_string(),
        platform: config_platform(&config).unwrap_or_else(|| platform.to_string()),
        config,
        layers,
    })
}

fn pick_entry<'a>(
    entries: &'a [Descriptor],
    tag: Option<&str>,
    label: &str,
) -> Result<&'a Descriptor> {
    match tag {
        Some(t) => entries
            .iter()
            .find(|d| {
                d.annotations.get(REF_NAME).is_some_and(|n| {
                    // docker save writes full names (`repo:tag`); skopeo/umoci write the tag.
                    n == t
                        || n.rsplit_once(':').is_some_and(|(_, nt)| nt == t)
                        || n.ends_with(&format!("/{t}"))
                })
            })
            .with_context(|| format!("{label}: no image tagged {t:?} in the layout")),
        None if entries.len() == 1 => Ok(&entries[0]),
        None if entries.is_empty() => bail!("{label}: the layout holds no image"),
        None => bail!(
            "{label}: the layout holds {} images; choose one with :<tag>",
            entries.len()
        ),
    }
}

/// Reads the entry's manifest, following a nested index to the wanted platform.
fn resolve(
    files: &dyn LayoutFiles,
    entry: &Descriptor,
    platform: &Platform,
    label: &str,
) -> Result<(Digest, manifest::ImageManifest)> {
    let mut desc = entry.clone();
    for _ in 0..4 {
        let digest = Digest::parse(&desc.digest)?;
        let body = files.read_small(&format!("blobs/sha256/{}", digest.hex()))?;
        let got = Digest::of_bytes(&body);
        if got != digest {
            bail!("{label}: manifest {digest} is corrupt (digest mismatch)");
        }
        let ct = (!desc.media_type.is_empty()).then_some(desc.media_type.as_str());
        match manifest::parse(&body, ct, label)? {
            Parsed::Image(m) => return Ok((digest, m)),
            Parsed::Index(entries) => desc = manifest::choose(&entries, platform)?.clone(),
        }
    }
    bail!("{label}: manifest lists nested too deeply")
}

/// Splits `PATH[:tag]` at the first colon, as containers/image does.
pub fn split_path_tag(spec: &str) -> (PathBuf, Option<String>) {
    match spec.split_once(':') {
        Some((p, t)) if !t.is_empty() => (Path::new(p).to_path_buf(), Some(t.to_string())),
        Some((p, _)) => (Path::new(p).to_path_buf(), None),
        None => (Path::new(spec).to_path_buf(), None),
    }
}
