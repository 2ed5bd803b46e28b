//! Image manifests and indexes (Docker schema 2 and OCI), their media types, and the checks
//! that turn a manifest into something convertible: known layer types only, and a clear
//! refusal for artifacts that are not container images (e.g. a SIF pushed with ORAS).

use super::platform::Platform;
use serde::Deserialize;
use std::collections::HashMap;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What we ask registries for, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

const CONFIG_TYPES: &[&str] = &[
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
];

const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// A content descriptor (config, layer, or index entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DescriptorPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// Either an image manifest or an index, told apart by media type or shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

/// A parsed document: an image, or an index to choose from.
pub enum Parsed {
    Image(ImageManifest),
    Index(Vec<Descriptor>),
}

/// An image manifest whose config and layers we know how to handle.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot parse manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported manifest type {0:?}")]
    Unsupported(String),
    #[error(
        "docker schema 1 manifests are not supported (the image is too old; rebuild or re-push it)"
    )]
    Schema1,
    #[error("{0:?} is not a container image (config type {1:?}); if it holds a SIF, try changing the protocol to oras://")]
    NotAnImage(String, String),
    #[error("unsupported layer media type {0:?}")]
    LayerType(String),
    #[error("no image for platform {wanted} in the manifest list (available: {available})")]
    NoPlatform { wanted: String, available: String },
}

/// Parses a manifest document. `content_type` is the registry's Content-Type, if any.
pub fn parse(body: &[u8], content_type: Option<&str>, what: &str) -> Result<Parsed, ManifestError> {
    let doc: AnyManifest = serde_json::from_slice(body)?;
    let media = content_type
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain")
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .or_else(|| doc.media_type.clone());
    match media.as_deref() {
        Some(DOCKER_SCHEMA1) | Some(DOCKER_SCHEMA1_SIGNED) => return Err(ManifestError::Schema1),
        _ if doc.schema_version == 1 => return Err(ManifestError::Schema1),
        Some(DOCKER_LIST) | Some(OCI_INDEX) => {
            return Ok(Parsed::Index(doc.manifests.unwrap_or_default()))
        }
        Some(DOCKER_MANIFEST) | Some(OCI_MANIFEST) | None => {}
        Some(other) => return Err(ManifestError::Unsupported(other.to_string())),
    }
    if let Some(manifests) = doc.manifests {
        return Ok(Parsed::Index(manifests));
    }
    let (Some(config), Some(layers)) = (doc.config, doc.layers) else {
        return Err(ManifestError::Unsupported(
            media.unwrap_or_else(|| "unknown".into()),
        ));
    };
    check_image(what, &config, &layers)?;
    Ok(Parsed::Image(ImageManifest { config, layers }))
}

/// Refuses artifacts (non-image configs) and unknown layer types.
fn check_image(
    what: &str,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Result<(), ManifestError> {
    if !config.media_type.is_empty() && !CONFIG_TYPES.contains(&config.media_type.as_str()) {
        return Err(ManifestError::NotAnImage(
            what.to_string(),
            config.media_type.clone(),
        ));
    }
    for layer in layers {
        if !is_layer_type(&layer.media_type) {
            if layer.media_type.contains("sif") || layer.media_type.contains("sylabs") {
                return Err(ManifestError::NotAnImage(
                    what.to_string(),
                    layer.media_type.clone(),
                ));
            }
            return Err(ManifestError::LayerType(layer.media_type.clone()));
        }
    }
    Ok(())
}

pub fn is_layer_type(media_type: &str) -> bool {
    LAYER_TYPES.contains(&media_type)
}

/// Picks the index entry for `platform` (the first that matches, preferring an exact
/// variant match).
pub fn choose<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
        })
        .collect();
    let exact = candidates.iter().find(|d| {
        d.platform.as_ref().and_then(|p| p.variant.as_deref()) == platform.variant.as_deref()
    });
    if let Some(d) = exact.or(candidates.first()) {
        return Ok(d);
    }
    let available: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| match &p.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{}", p.os, p.architecture, v),
            _ => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    Err(ManifestError::NoPlatform {
        wanted: platform.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn index_json() -> String {
        let entry = |arch: &str, variant: &str| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{HEX}","size":1,"platform":{{"os":"linux","architecture":"{arch}","variant":"{variant}"}}}}"#
            )
        };
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{},{}]}}"#,
            entry("amd64", ""),
            entry("arm", "v6"),
            entry("arm", "v7")
        )
    }

    #[test]
    fn index_entries_are_chosen_by_platform() {
        let Parsed::Index(entries) = parse(index_json().as_bytes(), None, "x").unwrap() else {
            panic!("expected an index")
        };
        let p = Platform::select(Some("arm"), Some("v6")).unwrap();
        let chosen = choose(&entries, &p).unwrap();
        assert_eq!(
            chosen.platform.as_ref().unwrap().variant.as_deref(),
            Some("v6")
        );
        let p = Platform::select(Some("s390x"), None).unwrap();
        let err = choose(&entries, &p).unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm/v7"),
            "{err}"
        );
    }

    #[test]
    fn sif_artifacts_are_refused_with_an_oras_hint() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.sylabs.sif.config.v1+json","digest":"sha256:{HEX}","size":2}},"layers":[{{"mediaType":"application/vnd.sylabs.sif.layer.v1.sif","digest":"sha256:{HEX}","size":3}}]}}"#
        );
        let err = parse(doc.as_bytes(), None, "reg/x:1")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("oras://"), "{err}");
    }

    #[test]
    fn image_manifest_with_gzip_layers_parses() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{HEX}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{HEX}","size":3}}]}}"#
        );
        let Parsed::Image(m) = parse(doc.as_bytes(), Some(DOCKER_MANIFEST), "x").unwrap() else {
            panic!("expected an image")
        };
        assert_eq!(m.layers.len(), 1);
    }
}
