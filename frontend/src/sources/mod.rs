//! Where an OCI image comes from: `docker://` registries, `docker-archive:`,
//! `docker-daemon:`, `oci:` and `oci-archive:`. Each produces a [`FetchedImage`] whose
//! blobs are in the cache, ready for conversion.

pub mod daemon;
pub mod docker_archive;
pub mod ingest;
pub mod local;
pub mod oci_layout;

use crate::cache::{Cache, Digest};
use crate::oci::FetchedImage;
use crate::registry::{ClientOptions, LayerFeed, Platform, Reference, Remote};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// An image source the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Docker(Reference),
    /// `docker-archive:FILE[:REF|:@INDEX]`: `image` picks one image of several.
    DockerArchive {
        file: PathBuf,
        image: Option<String>,
    },
    DockerDaemon(String),
    Oci {
        dir: PathBuf,
        tag: Option<String>,
    },
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
}

/// Transports Apptainer has that other parts of this program (or nothing yet) handle.
const OTHER_TRANSPORTS: &[&str] = &[
    "library",
    "oras",
    "shub",
    "http",
    "https",
    "ipfs",
    "localimage",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("unsupported transport type: {0}")]
    UnknownTransport(String),
    #[error("{0}:// images are not supported by this build yet")]
    NotHere(String),
    #[error(transparent)]
    Reference(#[from] crate::registry::reference::ReferenceError),
    #[error("{0}: missing path")]
    MissingPath(String),
}

impl Source {
    /// Parses a URI. `Ok(None)` means it names no image transport at all (a local path:
    /// a definition file, SIF or sandbox, handled elsewhere).
    pub fn parse(uri: &str) -> Result<Option<Source>, SourceError> {
        if let Some(rest) = uri.strip_prefix("docker://") {
            return Ok(Some(Source::Docker(Reference::parse(rest)?)));
        }
        let prefixed = |p: &str| uri.strip_prefix(p).map(|r| r.to_string());
        if let Some(rest) = prefixed("docker-archive:") {
            // As the reference splits it: the file name ends at the first colon.
            let (file, image) = oci_layout::split_path_tag(&non_empty(rest, "docker-archive")?);
            return Ok(Some(Source::DockerArchive { file, image }));
        }
        if let Some(rest) = prefixed("docker-daemon:") {
            let rest = rest.trim_start_matches("//").to_string();
            return non_empty(rest, "docker-daemon").map(|n| Some(Source::DockerDaemon(n)));
        }
        if let Some(rest) = prefixed("oci-archive:") {
            let (file, tag) = oci_layout::split_path_tag(&non_empty(rest, "oci-archive")?);
            return Ok(Some(Source::OciArchive { file, tag }));
        }
        if let Some(rest) = prefixed("oci:") {
            let (dir, tag) = oci_layout::split_path_tag(&non_empty(rest, "oci")?);
            return Ok(Some(Source::Oci { dir, tag }));
        }
        if let Some((transport, _)) = uri.split_once("://") {
            if OTHER_TRANSPORTS.contains(&transport) {
                return Err(SourceError::NotHere(transport.to_string()));
            }
            return Err(SourceError::UnknownTransport(transport.to_string()));
        }
        Ok(None)
    }

    /// `<name>_<tag>.sif`, the name `apptainer pull` gives by default.
    pub fn default_sif_name(&self) -> String {
        let (name, tag) = match self {
            Source::Docker(r) => (
                r.short_name().to_string(),
                r.tag
                    .clone()
                    .or_else(|| r.digest.as_ref().map(|d| d.hex()[..12].to_string()))
                    .unwrap_or_else(|| "latest".into()),
            ),
            Source::DockerDaemon(n) => {
                let last = n.rsplit('/').next().unwrap_or(n);
                match last.split_once(':') {
                    Some((a, t)) => (a.to_string(), t.to_string()),
                    None => (last.to_string(), "latest".into()),
                }
            }
            Source::DockerArchive { file, .. } => (file_stem(file), "latest".into()),
            Source::Oci { dir: p, tag } | Source::OciArchive { file: p, tag } => {
                (file_stem(p), tag.clone().unwrap_or_else(|| "latest".into()))
            }
        };
        format!("{name}_{tag}.sif")
    }
}

fn non_empty(rest: String, transport: &str) -> Result<String, SourceError> {
    if rest.is_empty() {
        Err(SourceError::MissingPath(transport.into()))
    } else {
        Ok(rest)
    }
}

fn file_stem(p: &std::path::Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    for ext in [".tar.gz", ".tgz", ".tar.zst", ".tar"] {
        if let Some(stem) = name.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    name
}

/// What fetching needs besides the source.
#[derive(Clone)]
pub struct FetchOptions {
    pub platform: Platform,
    pub client: ClientOptions,
    /// `--docker-host` / `DOCKER_HOST`.
    pub docker_host: Option<String>,
}

/// Fetches the image into `cache`.
pub fn fetch(source: &Source, opts: &FetchOptions, cache: &Cache) -> Result<FetchedImage> {
    fetch_following(source, opts, cache, &mut |_| {})
}

/// As [`fetch`]; for a registry, `on_layers` gets the layers to read while they download
/// (see [`Remote::fetch_following`]). Local sources have their layers in the cache first
/// and never call it.
pub fn fetch_following(
    source: &Source,
    opts: &FetchOptions,
    cache: &Cache,
    on_layers: &mut dyn FnMut(Vec<LayerFeed>),
) -> Result<FetchedImage> {
    match source {
        Source::Docker(r) => {
            Remote::new(r, &opts.client).fetch_following(&opts.platform, cache, on_layers)
        }
        Source::DockerArchive { file, image } => {
            let label = format!("docker-archive:{}", file.display());
            let reader = ingest::open_archive(file, &label)?;
            docker_archive::fetch(reader, &label, image.as_deref(), &opts.platform, cache)
        }
        Source::DockerDaemon(name) => {
            daemon::fetch(name, opts.docker_host.as_deref(), &opts.platform, cache)
        }
        Source::Oci { dir, tag } => {
            let label = format!("oci:{}", dir.display());
            if !dir.is_dir() {
                bail!("{label}: no such directory");
            }
            let files = oci_layout::DirLayout(dir.clone());
            oci_layout::fetch(&files, tag.as_deref(), &opts.platform, &label, cache)
        }
        Source::OciArchive { file, tag } => {
            let label = format!("oci-archive:{}", file.display());
            let f = ingest::open_archive(file, &label)?;
            let files = ingest::Ingested::read(f, &label, cache)?;
            if !oci_layout::is_layout(&files) {
                bail!("{label}: not an OCI layout archive (no oci-layout and index.json)");
            }
            oci_layout::fetch(&files, tag.as_deref(), &opts.platform, &label, cache)
        }
    }
}

/// The digest that identifies what a registry source points at now (an index digest for
/// multi-arch images), for the converted-SIF cache key. Other sources have none before
/// they are read.
pub fn resolve_remote_digest(source: &Source, opts: &FetchOptions) -> Result<Option<Digest>> {
    match source {
        // A digest-pinned reference cannot change: no need to ask the registry, so jobs
        // that start many containers from a cached image make no requests at all.
        Source::Docker(r) if r.digest.is_some() => Ok(r.digest.clone()),
        Source::Docker(r) => Ok(Some(Remote::new(r, &opts.client).resolve_digest()?)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse() {
        assert!(matches!(
            Source::parse("docker://alpine").unwrap(),
            Some(Source::Docker(_))
        ));
        assert_eq!(
            Source::parse("oci:/x/layout:v1").unwrap(),
            Some(Source::Oci {
                dir: "/x/layout".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            Source::parse("docker-archive:a.tar").unwrap(),
            Some(Source::DockerArchive {
                file: "a.tar".into(),
                image: None
            })
        );
        assert_eq!(
            Source::parse("docker-archive:/x/a.tar:alpine:3.20").unwrap(),
            Some(Source::DockerArchive {
                file: "/x/a.tar".into(),
                image: Some("alpine:3.20".into())
            })
        );
        assert_eq!(
            Source::parse("foo://x"),
            Err(SourceError::UnknownTransport("foo".into()))
        );
        assert_eq!(Source::parse("image.def").unwrap(), None);
        assert!(Source::parse("docker-archive:").is_err());
        assert!(Source::parse("docker://UPPER").is_err());
    }

    #[test]
    fn default_names_follow_apptainer() {
        let name = |u: &str| Source::parse(u).unwrap().unwrap().default_sif_name();
        assert_eq!(name("docker://sylabsio/lolcow"), "lolcow_latest.sif");
        assert_eq!(name("docker://sylabs.io/lolcow:3.7"), "lolcow_3.7.sif");
        assert_eq!(
            name("docker-archive:/tmp/lolcow.tar.gz"),
            "lolcow_latest.sif"
        );
        assert_eq!(name("docker-daemon:sylabsio/lolcow:v2"), "lolcow_v2.sif");
        assert_eq!(name("oci-archive:img.tar:1.0"), "img_1.0.sif");
    }
}
