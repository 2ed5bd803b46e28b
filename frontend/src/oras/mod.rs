//! `oras://` images: a SIF stored in an OCI registry as an artifact, in the shape the
//! reference pushes (so either side reads the other's): an OCI image manifest whose config is
//! the two bytes `{}` with media type `application/vnd.sylabs.sif.config.v1+json` (also
//! inlined as `data`), one layer `application/vnd.sylabs.sif.layer.v1.sif` holding the SIF
//! byte for byte, annotated with `org.opencontainers.image.title` = the file name, and the
//! manifest annotated with `org.opencontainers.image.created`.
//!
//! Uploads follow the distribution API: POST an upload, stream the file in one PATCH, PUT
//! the digest (the reference's flow), or the bytes in the PUT itself (the monolithic flow,
//! for the small config and for registries without PATCH); blobs already in the
//! repository are skipped. Pulls verify the manifest (when
//! pinned) and the layer against their digests, keep the SIF in the blob cache by digest,
//! and copy it out atomically.

use crate::auth::session::{Body, Session, SessionError};
use crate::cache::{BlobSlot, Cache, Digest};
use crate::registry::auth::Credentials;
use crate::registry::Reference;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.sylabs.sif.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.sylabs.sif.layer.v1.sif";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// What Singularity before 3.7 pushed (with its typo), still accepted on pull.
const PROTO_LAYER_MEDIA_TYPE: &str = "appliciation/vnd.sylabs.sif.layer.tar";
const TITLE: &str = "org.opencontainers.image.title";
const CREATED: &str = "org.opencontainers.image.created";
/// The config is always an empty JSON object.
const EMPTY_CONFIG: &[u8] = b"{}";

/// Parses the part after `oras://`.
pub fn parse_reference(uri: &str) -> Result<Reference> {
    let rest = uri.strip_prefix("oras://").unwrap_or(uri);
    Ok(Reference::parse(rest)?)
}

/// Connection settings for one command.
pub struct Target {
    pub reference: Reference,
    pub credentials: Credentials,
    pub no_https: bool,
}

impl Target {
    fn session(&self, push: bool) -> Session {
        Session::new(
            self.reference.api_host(),
            Some(&self.reference.repository),
            push,
            self.credentials.clone(),
            self.no_https,
        )
    }

    fn uri(&self) -> String {
        format!("oras://{}", self.reference)
    }
}

/// Checks that `path` is a SIF file (the reference refuses to push or keep anything else).
fn ensure_sif(path: &Path) -> Result<()> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    sif::read::Image::load(&mut f)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{} is not a SIF image: {e}", path.display()))
}

/// Streams a file through sha256.
fn digest_file(path: &Path) -> Result<(Digest, u64)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hashing = crate::cache::digest::HashingReader::new(f);
    std::io::copy(&mut hashing, &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hashing.finish())
}

/// The manifest the reference writes for one SIF layer.
pub fn manifest(
    layer: &Digest,
    size: u64,
    title: &str,
    created: Option<String>,
) -> serde_json::Value {
    let mut annotations = BTreeMap::new();
    if let Some(c) = created {
        annotations.insert(CREATED, c);
    }
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": Digest::of_bytes(EMPTY_CONFIG).to_string(),
            "size": EMPTY_CONFIG.len(),
            "data": base64::engine::general_purpose::STANDARD.encode(EMPTY_CONFIG),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer.to_string(),
            "size": size,
            "annotations": { TITLE: title },
        }],
        "annotations": annotations,
    })
}

/// `apptainer push IMAGE.sif oras://...`: returns the manifest digest.
pub fn push(image: &Path, target: &Target) -> Result<Digest> {
    let uri = target.uri();
    if target.reference.digest.is_some() {
        bail!("{uri}: push to a tag, not a digest");
    }
    ensure_sif(image)?;
    let (layer, size) = digest_file(image)?;
    let mut session = target.session(true);
    upload_blob(
        &mut session,
        &Digest::of_bytes(EMPTY_CONFIG),
        &Body::Bytes {
            data: EMPTY_CONFIG,
            content_type: "application/octet-stream",
        },
    )?;
    crate::info!("Uploading {} ({} bytes)", image.display(), size);
    let group = crate::registry::progress::multi();
    let bar = crate::registry::progress::bytes_bar(Some(&group), size, &layer.hex()[..12]);
    upload_blob(
        &mut session,
        &layer,
        &Body::File {
            path: image,
            content_type: "application/octet-stream",
            progress: Some(&bar),
        },
    )?;
    bar.finish_and_clear();
    let title = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image.sif".into());
    let created = std::fs::metadata(image)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| {
            time::OffsetDateTime::from(t)
                .format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                ))
                .ok()
        });
    let body = serde_json::to_vec(&manifest(&layer, size, &title, created))?;
    let tag = target.reference.manifest_ref();
    session.send(
        "PUT",
        &format!("manifests/{tag}"),
        None,
        &Body::Bytes {
            data: &body,
            content_type: MANIFEST_MEDIA_TYPE,
        },
        &uri,
    )?;
    Ok(Digest::of_bytes(&body))
}

/// Uploads one blob unless the repository has it.
fn upload_blob(session: &mut Session, digest: &Digest, body: &Body<'_>) -> Result<()> {
    let what = format!("blob {digest}");
    match session.send(
        "HEAD",
        &format!("blobs/{digest}"),
        None,
        &Body::Empty,
        &what,
    ) {
        Ok(_) => {
            crate::verbose!("{what} is already in the registry");
            return Ok(());
        }
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    if let Body::File { .. } = body {
        // The reference's flow for files: the bytes in one streamed PATCH, then a PUT
        // closing the upload with the digest. Registries without PATCH get the monolithic
        // PUT instead.
        match upload_streamed(session, digest, body, &what) {
            Err(e) if matches!(e.status(), Some(405 | 501)) => {
                crate::verbose!(
                    "{what}: the registry refused a streamed upload ({e}), sending it whole"
                );
            }
            r => return r.map_err(Into::into),
        }
    }
    let location = start_upload(session, &what)?;
    session.send("PUT", &with_digest(&location, digest), None, body, &what)?;
    Ok(())
}

/// POST an upload; the absolute location to send it to.
fn start_upload(session: &mut Session, what: &str) -> Result<String, SessionError> {
    let resp = session.send("POST", "blobs/uploads/", None, &Body::Empty, what)?;
    match resp.header("location") {
        Some(l) => Ok(session.absolute(l)),
        None => Err(SessionError::Protocol {
            what: what.to_string(),
            detail: "the registry started an upload without a location".into(),
        }),
    }
}

fn upload_streamed(
    session: &mut Session,
    digest: &Digest,
    body: &Body<'_>,
    what: &str,
) -> Result<(), SessionError> {
    let location = start_upload(session, what)?;
    let resp = session.send("PATCH", &location, None, body, what)?;
    let next = match resp.header("location") {
        Some(l) => session.absolute(l),
        None => location,
    };
    session.send("PUT", &with_digest(&next, digest), None, &Body::Empty, what)?;
    Ok(())
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// `apptainer pull DEST oras://...`: the SIF layer into the cache (unless there), then to
/// `dest` atomically.
pub fn pull(target: &Target, dest: &Path, force: bool, disable_cache: bool) -> Result<()> {
    let uri = target.uri();
    crate::pull::check_output(dest, force)?;
    let mut session = target.session(false);
    let mref = target.reference.manifest_ref();
    let mut body = get_manifest(&mut session, &mref, &uri)?;
    if let Some(pinned) = &target.reference.digest {
        let got = Digest::of_bytes(&body);
        if &got != pinned {
            bail!("{uri}: manifest digest mismatch: expected {pinned}, got {got}");
        }
    }
    if let Some(chosen) =
        index_choice(&body).with_context(|| format!("{uri}: reading the index"))?
    {
        body = get_manifest(&mut session, &chosen.to_string(), &uri)?;
        let got = Digest::of_bytes(&body);
        if got != chosen {
            bail!("{uri}: manifest digest mismatch: expected {chosen}, got {got}");
        }
    }
    let (layer, size) = sif_layer(&body).with_context(|| format!("{uri}: not a SIF artifact"))?;
    let cache = Cache::open(disable_cache)?;
    let blob = match cache.begin_blob(&layer, Some(size))? {
        BlobSlot::Present(b) => {
            crate::info!("Using cached image");
            b
        }
        BlobSlot::Missing(mut writer) => {
            crate::info!("Downloading oras image");
            let what = format!("blob {layer}");
            let resp = session.send("GET", &format!("blobs/{layer}"), None, &Body::Empty, &what)?;
            let mut reader = resp.into_reader();
            let group = crate::registry::progress::multi();
            let bar = crate::registry::progress::bytes_bar(Some(&group), size, &layer.hex()[..12]);
            writer
                .fill(&mut reader as &mut dyn Read, &|n| bar.set_position(n))
                .with_context(|| format!("downloading {what}"))?;
            bar.finish_and_clear();
            writer.commit()?
        }
    };
    ensure_sif(&blob.path).with_context(|| format!("{uri}: the artifact's layer"))?;
    // A temporary cache (--disable-cache) goes away with `cache` once the copy is made.
    crate::pull::copy_atomic(&blob.path, dest, force)
}

fn get_manifest(session: &mut Session, mref: &str, uri: &str) -> Result<Vec<u8>> {
    let accept = format!("{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}");
    let resp = session.send(
        "GET",
        &format!("manifests/{mref}"),
        Some(&accept),
        &Body::Empty,
        uri,
    )?;
    crate::registry::client::read_document(resp)
        .with_context(|| format!("{uri}: reading the manifest"))
}

/// For an image index, the manifest for this host's architecture (or its only one).
fn index_choice(body: &[u8]) -> Result<Option<Digest>> {
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Option<Vec<Entry>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<Platform>,
    }
    #[derive(serde::Deserialize)]
    struct Platform {
        #[serde(default)]
        architecture: String,
    }
    let Ok(Index {
        manifests: Some(entries),
    }) = serde_json::from_slice::<Index>(body)
    else {
        return Ok(None);
    };
    let host = crate::registry::Platform::host().architecture;
    let chosen = match entries.as_slice() {
        [only] => only,
        _ => entries
            .iter()
            .find(|e| e.platform.as_ref().is_some_and(|p| p.architecture == host))
            .with_context(|| format!("no SIF for architecture {host}"))?,
    };
    Ok(Some(Digest::parse(&chosen.digest)?))
}

/// The SIF layer's digest and size from an artifact manifest: exactly one layer, of the
/// SIF media type (or the misspelt one of Singularity before 3.7).
fn sif_layer(manifest: &[u8]) -> Result<(Digest, u64)> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(default)]
        layers: Vec<Layer>,
    }
    #[derive(serde::Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: String,
        size: u64,
    }
    let m: Manifest = serde_json::from_slice(manifest).context("the manifest is not valid JSON")?;
    let [l] = m.layers.as_slice() else {
        bail!(
            "a SIF artifact has one layer, this one has {}",
            m.layers.len()
        );
    };
    if l.media_type != LAYER_MEDIA_TYPE && l.media_type != PROTO_LAYER_MEDIA_TYPE {
        bail!(
            "layer media type {:?} is not {LAYER_MEDIA_TYPE}",
            l.media_type
        );
    }
    Ok((Digest::parse(&l.digest)?, l.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_has_the_reference_shape() {
        let d = Digest::of_bytes(b"sif");
        let m = manifest(&d, 3, "x.sif", Some("2024-01-01T00:00:00Z".into()));
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(m["config"]["data"], "e30=");
        assert_eq!(m["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(m["layers"][0]["annotations"][TITLE], "x.sif");
        let body = serde_json::to_vec(&m).unwrap();
        assert_eq!(sif_layer(&body).unwrap(), (d, 3));
    }

    #[test]
    fn older_layer_type_is_accepted_and_extra_layers_are_not() {
        let d = Digest::of_bytes(b"x");
        let one = json!({"layers": [{"mediaType": PROTO_LAYER_MEDIA_TYPE, "digest": d.to_string(), "size": 1}]});
        assert_eq!(
            sif_layer(one.to_string().as_bytes()).unwrap(),
            (d.clone(), 1)
        );
        let layer = json!({"mediaType": LAYER_MEDIA_TYPE, "digest": d.to_string(), "size": 1});
        let two = json!({"layers": [layer.clone(), layer]});
        assert!(sif_layer(two.to_string().as_bytes()).is_err());
        let tar = json!({"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": 1}]});
        assert!(sif_layer(tar.to_string().as_bytes()).is_err());
    }

    #[test]
    fn index_picks_the_host_architecture() {
        let host = crate::registry::Platform::host().architecture;
        let (a, b) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"));
        let index = json!({"manifests": [
            {"digest": a.to_string(), "platform": {"os": "linux", "architecture": "no-such-arch"}},
            {"digest": b.to_string(), "platform": {"os": "linux", "architecture": host}},
        ]});
        assert_eq!(index_choice(index.to_string().as_bytes()).unwrap(), Some(b));
        let manifest = json!({"schemaVersion": 2, "layers": []});
        assert_eq!(index_choice(manifest.to_string().as_bytes()).unwrap(), None);
    }
}
