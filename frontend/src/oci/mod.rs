//! OCI images as the frontend handles them: fetched from a registry or read from an archive
//! or layout into the content-addressed blob cache, then converted.
//!
//! `FetchedImage` is the hand-off between the sources (registry, docker-archive,
//! docker-daemon, oci, oci-archive) and the conversion to SIF or sandbox.

use std::path::PathBuf;

/// One layer blob, already on disk and verified against its digest and size.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `sha256:<hex>` of the blob as stored (compressed if it is compressed).
    pub digest: String,
    pub size: u64,
    /// e.g. `application/vnd.oci.image.layer.v1.tar+gzip`,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`, `...tar+zstd`, `...tar`.
    pub media_type: String,
    /// Where the verified blob is (normally in the blob cache).
    pub path: PathBuf,
}

/// An image whose manifest, config and layers are available locally.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    /// The reference as the user gave it (for labels and messages).
    pub reference: String,
    /// `sha256:<hex>` of the image manifest; keys the converted-SIF cache.
    pub manifest_digest: String,
    /// The raw image config JSON (its `config` holds Env, Entrypoint, Cmd, Labels, ...).
    pub config: Vec<u8>,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// `os/arch[/variant]` the image is for.
    pub platform: String,
}
