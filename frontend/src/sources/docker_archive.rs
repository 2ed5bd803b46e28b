//! `docker save` archives (`docker-archive:FILE`, plain or gzip-compressed), also the
//! stream the Docker daemon returns for `docker-daemon:`. Newer Docker writes an OCI
//! layout alongside `manifest.json`; such archives are read as layouts, as Apptainer does.
//!
//! `docker save` can put several images in one archive. As with the reference's
//! `docker-archive:FILE[:REF|:@INDEX]`, an archive of one image needs no selector; with
//! more, the user names one by a reference among its tags (`alpine:3.20`, Docker's
//! defaults applied) or by its zero-based position (`@1`), and anything else is an error
//! that lists the choices.

use super::ingest::Ingested;
use super::oci_layout;
use crate::cache::{Cache, Digest};
use crate::oci::{FetchedImage, Layer};
use crate::registry::{config_platform, Platform};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::io::Read;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads a docker-save stream into the cache and describes the image in it that
/// `select` names (`REF` or `@INDEX`; `None` when the archive holds one image).
pub fn fetch(
    reader: impl Read + 'static,
    label: &str,
    select: Option<&str>,
    platform: &Platform,
    cache: &Cache,
) -> Result<FetchedImage> {
    let files = Ingested::read(reader, label, cache)?;
    if oci_layout::is_layout(&files) && !files.has("manifest.json") {
        return oci_layout::fetch(&files, None, platform, label, cache);
    }
    if !files.has("manifest.json") {
        if files.has("repositories") {
            bail!("{label}: legacy docker archive without manifest.json is not supported");
        }
        bail!("{label}: not a docker archive (no manifest.json)");
    }
    let manifests: Vec<SaveManifest> =
        serde_json::from_slice(files.read_small("manifest.json")?)
            .with_context(|| format!("{label}: manifest.json is not valid"))?;
    let m = choose(&manifests, select, label)?;
    let config = files.read_small(&m.config)?.to_vec();
    check_named_digest(&m.config, &Digest::of_bytes(&config), label)?;
    let config_json: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("{label}: image config is not valid JSON"))?;
    let diff_ids = diff_ids(&config_json);
    let config_blob = files.blob(&m.config, cache)?;
    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, path) in m.layers.iter().enumerate() {
        let blob = files.blob(path, cache)?;
        check_named_digest(path, &blob.digest, label)?;
        let media_type = sniff_media_type(&blob.path)?;
        // An uncompressed layer's digest is its diff_id: a free integrity check.
        if media_type.ends_with(".tar") {
            if let Some(id) = diff_ids.get(i) {
                if id != &blob.digest.to_string() {
                    bail!("{label}: layer {path} is corrupt (its digest does not match the image config)");
                }
            }
        }
        layers.push(Layer {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type,
            path: blob.path,
        });
    }
    let manifest_digest = synthetic_manifest_digest(&config_blob.digest, config_blob.size, &layers);
    Ok(FetchedImage {
        reference: label.to_string(),
        manifest_digest: manifest_digest.to_string(),
        platform: config_platform(&config).unwrap_or_else(|| platform.to_string()),
        config,
        layers,
    })
}

/// The image `select` names, or the only one.
fn choose<'a>(
    manifests: &'a [SaveManifest],
    select: Option<&str>,
    label: &str,
) -> Result<&'a SaveManifest> {
    if manifests.is_empty() {
        bail!("{label}: manifest.json lists no image");
    }
    let found = match select {
        None if manifests.len() == 1 => return Ok(&manifests[0]),
        None => None,
        Some(s) if s.starts_with('@') => {
            let index: usize = s[1..]
                .parse()
                .with_context(|| format!("{label}: invalid image index {s:?}"))?;
            manifests.get(index)
        }
        Some(wanted) => {
            let wanted = normalized_tag(wanted)
                .with_context(|| format!("{label}: invalid image reference {wanted:?}"))?;
            manifests.iter().find(|m| {
                m.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| normalized_tag(t).is_ok_and(|t| t == wanted))
            })
        }
    };
    if let Some(m) = found {
        return Ok(m);
    }
    let what = match select {
        None => format!("it holds {} images: name one", manifests.len()),
        Some(s) => format!("no image {s:?} in it"),
    };
    bail!("{label}: {what} (choices: {})", choices(manifests))
}

/// `@0 busybox:latest, @1 alpine:3.20 alpine:edge, @2 (untagged)`.
fn choices(manifests: &[SaveManifest]) -> String {
    manifests
        .iter()
        .enumerate()
        .map(|(i, m)| match m.repo_tags.as_deref() {
            Some(tags) if !tags.is_empty() => format!("@{i} {}", tags.join(" ")),
            _ => format!("@{i} (untagged)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A tag reference with Docker's defaults (`docker.io`, `library/`, `latest`), as
/// `registry/repository:tag`. A digest cannot name an image of an archive.
fn normalized_tag(reference: &str) -> Result<String> {
    let r = crate::registry::Reference::parse(reference)?;
    if r.digest.is_some() {
        bail!("a docker-archive image is named by a tag, not a digest");
    }
    let tag = r.tag.as_deref().unwrap_or("latest");
    Ok(format!("{}/{}:{tag}", r.registry, r.repository))
}

fn diff_ids(config: &serde_json::Value) -> Vec<String> {
    config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Members named by their digest (`<hex>.json`, `blobs/sha256/<hex>`) must match it.
fn check_named_digest(path: &str, got: &Digest, label: &str) -> Result<()> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.strip_suffix(".json").unwrap_or(name);
    if let Some(named) = Digest::from_hex(stem) {
        if &named != got {
            bail!("{label}: {path} is corrupt (digest mismatch: got {got})");
        }
    }
    Ok(())
}

/// The layer media type from the blob's first bytes.
pub fn sniff_media_type(path: &std::path::Path) -> Result<String> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f.read(&mut magic)?;
    let t = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if n >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    Ok(t.to_string())
}

/// An archive has no manifest; this is the digest of the OCI manifest that describes
/// exactly its config and layers, so equal archives share cache entries.
fn synthetic_manifest_digest(config: &Digest, config_size: u64, layers: &[Layer]) -> Digest {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": layers,
    });
    Digest::of_bytes(doc.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn archive(layer: &[u8], diff_id: &str) -> Vec<u8> {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let config_name = format!("{}.json", Digest::of_bytes(config.as_bytes()).hex());
        let manifest = format!(
            r#"[{{"Config":"{config_name}","RepoTags":["t/x:1"],"Layers":["abc/layer.tar"]}}]"#
        );
        tar_of(&[
            ("abc/layer.tar", layer),
            (&config_name, config.as_bytes()),
            ("manifest.json", manifest.as_bytes()),
        ])
    }

    #[test]
    fn docker_save_archive_becomes_a_fetched_image() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let layer = tar_of(&[("hello.txt", b"hi")]);
        let diff_id = Digest::of_bytes(&layer).to_string();
        let platform = Platform::host();
        let img = fetch(
            std::io::Cursor::new(archive(&layer, &diff_id)),
            "t",
            None,
            &platform,
            &cache,
        )
        .unwrap();
        assert_eq!(img.platform, "linux/amd64");
        assert_eq!(img.layers.len(), 1);
        assert_eq!(img.layers[0].digest, diff_id);
        assert_eq!(
            img.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert_eq!(std::fs::read(&img.layers[0].path).unwrap(), layer);
        // The same archive again gives the same manifest digest (the SIF cache key).
        let again = fetch(
            std::io::Cursor::new(archive(&layer, &diff_id)),
            "t",
            None,
            &platform,
            &cache,
        )
        .unwrap();
        assert_eq!(img.manifest_digest, again.manifest_digest);
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let layer = tar_of(&[("hello.txt", b"hi")]);
        let wrong = Digest::of_bytes(b"something else").to_string();
        let err = fetch(
            std::io::Cursor::new(archive(&layer, &wrong)),
            "t",
            None,
            &Platform::host(),
            &cache,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("corrupt"), "{err}");
    }

    fn save_manifest(tags: &[&str]) -> SaveManifest {
        SaveManifest {
            config: "c.json".into(),
            repo_tags: (!tags.is_empty()).then(|| tags.iter().map(|t| t.to_string()).collect()),
            layers: Vec::new(),
        }
    }

    #[test]
    fn one_image_of_several_is_chosen_by_tag_or_index() {
        let ms = [
            save_manifest(&["busybox:latest"]),
            save_manifest(&["alpine:3.20", "example.org/team/tool:1"]),
            save_manifest(&[]),
        ];
        let tags = |m: &SaveManifest| m.repo_tags.clone().unwrap_or_default();
        assert_eq!(
            tags(choose(&ms, Some("busybox"), "a").unwrap()),
            ["busybox:latest"]
        );
        let alpine = choose(&ms, Some("docker.io/library/alpine:3.20"), "a").unwrap();
        assert_eq!(tags(alpine)[0], "alpine:3.20");
        let tool = choose(&ms, Some("example.org/team/tool:1"), "a").unwrap();
        assert_eq!(tags(tool)[0], "alpine:3.20");
        assert!(choose(&ms, Some("@2"), "a").unwrap().repo_tags.is_none());
        assert_eq!(
            tags(choose(&ms[..1], None, "a").unwrap()),
            ["busybox:latest"]
        );

        let err = choose(&ms, None, "docker-archive:a.tar")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "docker-archive:a.tar: it holds 3 images: name one (choices: @0 busybox:latest, \
             @1 alpine:3.20 example.org/team/tool:1, @2 (untagged))"
        );
        let err = choose(&ms, Some("alpine:edge"), "a")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a: no image \"alpine:edge\" in it (choices: @0"),
            "{err}"
        );
        assert!(choose(&ms, Some("@3"), "a").is_err());
        assert!(choose(&ms, Some("@x"), "a").is_err());
        assert!(choose(&ms, Some("busybox@sha256:abc"), "a").is_err());
    }

    #[test]
    fn gzip_archives_are_read_and_junk_is_not_a_tar() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let layer = tar_of(&[("a", b"b")]);
        let diff_id = Digest::of_bytes(&layer).to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &archive(&layer, &diff_id)).unwrap();
        let gz = gz.finish().unwrap();
        assert!(fetch(
            std::io::Cursor::new(gz),
            "t",
            None,
            &Platform::host(),
            &cache
        )
        .is_ok());
        let err = fetch(
            std::io::Cursor::new(b"not a tar at all".repeat(40)),
            "junk",
            None,
            &Platform::host(),
            &cache,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not a tar archive"), "{err:#}");
    }
}
