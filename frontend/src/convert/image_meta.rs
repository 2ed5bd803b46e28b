//! What the conversion adds besides the layers: `/.singularity.d` and the base
//! directories in the tree, and the JSON objects stored beside the squashfs in the SIF.
//!
//! Everything is put into the merged tree (the output stream), never written into a
//! directory of the user first. Rules as the reference's OCI conversion: base
//! directories are made only where nothing has the name, the `/` symlinks replace
//! symlinks but never other files, generated files replace what the image had.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::tree::{Kind, Meta, Source, Tree};
use crate::metadata;
use crate::oci::FetchedImage;

/// The parts of an OCI image config the conversion uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The `config` object as the image has it (stored in the SIF as `oci-config.json`).
    pub raw_config: Value,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        // Some writers store a single string where an array is expected.
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl ImageConfig {
    /// Parses the raw image config JSON.
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let doc: Value = serde_json::from_slice(raw).context("image config is not valid JSON")?;
        let config = doc.get("config").cloned().unwrap_or(Value::Null);
        let config = if config.is_object() {
            config
        } else {
            Value::Object(Default::default())
        };
        let labels = match config.get("Labels") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(ImageConfig {
            entrypoint: strings(config.get("Entrypoint")),
            cmd: strings(config.get("Cmd")),
            env: strings(config.get("Env")),
            labels,
            raw_config: config,
        })
    }
}

/// `bootstrap` and `from` of the definition the reference records for a conversion:
/// the source's transport and the rest of the reference (`docker://alpine` gives
/// `docker` and `alpine`, `oci-archive:x.tar` gives `oci-archive` and `x.tar`).
pub fn bootstrap_from(reference: &str) -> (String, String) {
    if let Some((t, rest)) = reference.split_once("://") {
        (t.to_string(), rest.to_string())
    } else if let Some((t, rest)) = reference.split_once(':') {
        (t.to_string(), rest.to_string())
    } else {
        ("docker".to_string(), reference.to_string())
    }
}

/// The definition file recorded for a conversion (`/.singularity.d/Singularity` and the
/// SIF's definition object).
pub fn deffile(reference: &str) -> String {
    let (bootstrap, from) = bootstrap_from(reference);
    format!("bootstrap: {bootstrap}\nfrom: {from}\n\n")
}

/// `arch` and `variant` from `os/arch[/variant]`.
pub fn arch_variant(platform: &str) -> (String, Option<String>) {
    let mut parts = platform.split('/');
    let _os = parts.next();
    let arch = parts.next().unwrap_or("").to_string();
    let variant = parts.next().filter(|v| !v.is_empty()).map(String::from);
    (arch, variant)
}

/// The image's labels plus the build labels the reference adds.
pub fn labels(
    image: &FetchedImage,
    config: &ImageConfig,
    now: time::OffsetDateTime,
) -> BTreeMap<String, String> {
    let mut l = config.labels.clone();
    let (bootstrap, from) = bootstrap_from(&image.reference);
    let (arch, variant) = arch_variant(&image.platform);
    crate::metadata::insert_build_labels(&mut l, now);
    l.insert(
        "org.label-schema.usage.singularity.deffile.bootstrap".into(),
        bootstrap,
    );
    l.insert(
        "org.label-schema.usage.singularity.deffile.from".into(),
        from.clone(),
    );
    if !image.manifest_digest.is_empty() {
        l.insert("org.opencontainers.image.base.name".into(), from);
        l.insert(
            "org.opencontainers.image.base.digest".into(),
            image.manifest_digest.clone(),
        );
    }
    if !arch.is_empty() {
        l.insert("org.opencontainers.image.architecture".into(), arch.clone());
        l.insert("org.label-schema.build-arch".into(), arch);
    }
    if let Some(v) = variant {
        l.insert("org.opencontainers.image.variant".into(), v);
    }
    l
}

/// The generated files of `/.singularity.d` for this image (path, mode, content).
pub struct Generated {
    pub files: Vec<(String, u32, Vec<u8>)>,
    pub labels: BTreeMap<String, String>,
    pub deffile: String,
}

/// Builds every generated file for an image.
pub fn generate(
    image: &FetchedImage,
    config: &ImageConfig,
    now: time::OffsetDateTime,
) -> Generated {
    let mut files: Vec<(String, u32, Vec<u8>)> = metadata::base_files()
        .into_iter()
        .map(|f| (f.path.to_string(), f.mode, f.content.into_bytes()))
        .collect();
    files.push((
        ".singularity.d/runscript".into(),
        0o755,
        metadata::oci_runscript(&config.entrypoint, &config.cmd).into_bytes(),
    ));
    files.push((
        ".singularity.d/env/10-docker2singularity.sh".into(),
        0o755,
        metadata::docker_env_script(&config.env).into_bytes(),
    ));
    let labels = labels(image, config, now);
    files.push((
        ".singularity.d/labels.json".into(),
        0o644,
        crate::metadata::labels_json(&labels),
    ));
    let deffile = deffile(&image.reference);
    files.push((
        ".singularity.d/Singularity".into(),
        0o644,
        deffile.clone().into_bytes(),
    ));
    Generated {
        files,
        labels,
        deffile,
    }
}

/// Adds the base directories, `/` symlinks and generated files to the merged tree.
pub fn inject(tree: &mut Tree, generated: &Generated, mtime: i64, layer: u16) {
    let meta = |mode| Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime,
        xattrs: None,
    };
    for dir in metadata::BASE_DIRS {
        tree.ensure_dir(dir.as_bytes(), layer);
    }
    for (name, target) in metadata::ROOT_SYMLINKS {
        let replaceable = match tree.get(name.as_bytes()) {
            None => true,
            Some(i) => matches!(i.kind, Kind::Symlink(_)),
        };
        if replaceable {
            let kind = Kind::Symlink(target.as_bytes().into());
            tree.put_path(name.as_bytes(), kind, meta(0o777), layer);
        }
    }
    for (path, mode, content) in &generated.files {
        let kind = Kind::File {
            source: Source::Inline(tree.add_inline(content.clone())),
            size: content.len() as u64,
        };
        tree.put_path(path.as_bytes(), kind, meta(*mode), layer);
    }
}

#[derive(Serialize)]
struct InspectAttributes<'a> {
    environment: BTreeMap<String, String>,
    labels: &'a BTreeMap<String, String>,
    runscript: String,
    deffile: &'a str,
    startscript: String,
}

#[derive(Serialize)]
struct InspectData<'a> {
    attributes: InspectAttributes<'a>,
}

#[derive(Serialize)]
struct InspectMetadata<'a> {
    data: InspectData<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The `inspect-metadata.json` object: what `apptainer inspect --all` reports.
pub fn inspect_metadata(generated: &Generated) -> Vec<u8> {
    let text = |p: &str| {
        generated
            .files
            .iter()
            .find(|(path, _, _)| path == p)
            .map(|(_, _, c)| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default()
    };
    let mut environment = BTreeMap::new();
    for p in [
        ".singularity.d/env/10-docker2singularity.sh",
        ".singularity.d/env/90-environment.sh",
    ] {
        environment.insert(format!("/{p}"), text(p));
    }
    let m = InspectMetadata {
        data: InspectData {
            attributes: InspectAttributes {
                environment,
                labels: &generated.labels,
                runscript: text(".singularity.d/runscript"),
                deffile: &generated.deffile,
                startscript: text(".singularity.d/startscript"),
            },
        },
        kind: "container",
    };
    serde_json::to_vec(&m).expect("inspect metadata serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_are_read_and_missing_ones_are_empty() {
        let c = ImageConfig::parse(
            br#"{"architecture":"amd64","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":null,
                "Env":["PATH=/bin"],"Labels":{"a":"b"},"User":"nobody"}}"#,
        )
        .unwrap();
        assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.env, ["PATH=/bin"]);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            ImageConfig::parse(b"{}").unwrap().entrypoint,
            Vec::<String>::new()
        );
        assert!(ImageConfig::parse(b"not json").is_err());
    }

    #[test]
    fn deffile_names_the_transport_and_source() {
        assert_eq!(
            deffile("docker://alpine:3.20"),
            "bootstrap: docker\nfrom: alpine:3.20\n\n"
        );
        assert_eq!(
            deffile("oci-archive:/tmp/x.tar"),
            "bootstrap: oci-archive\nfrom: /tmp/x.tar\n\n"
        );
    }

    #[test]
    fn created_label_has_whole_seconds() {
        let image = FetchedImage {
            reference: "docker://x".into(),
            manifest_digest: "sha256:1".into(),
            config: b"{}".to_vec(),
            layers: Vec::new(),
            platform: "linux/arm64/v8".into(),
        };
        let t = time::macros::datetime!(2026-12-04 09:05:03.123456 UTC);
        let l = labels(&image, &ImageConfig::default(), t);
        assert_eq!(
            l["org.opencontainers.image.created"],
            "2026-12-04T09:05:03Z"
        );
        assert_eq!(l["org.opencontainers.image.architecture"], "arm64");
        assert_eq!(l["org.opencontainers.image.variant"], "v8");
        assert_eq!(l["org.opencontainers.image.base.digest"], "sha256:1");
    }

    #[test]
    fn injection_keeps_existing_dirs_and_files_but_replaces_generated_ones() {
        use super::super::tree::{Entry, EntryKind};
        let mut t = Tree::new();
        let e = |p: &str, kind| Entry {
            path: p.into(),
            kind,
            meta: Meta {
                mode: 0o700,
                ..Meta::default()
            },
        };
        t.apply(0, 0, &e("tmp", EntryKind::Symlink(b"var/tmp".to_vec())));
        t.apply(0, 1, &e("environment", EntryKind::File { size: 0 }));
        t.apply(
            0,
            2,
            &e("singularity", EntryKind::Symlink(b"elsewhere".to_vec())),
        );
        t.apply(0, 3, &e("etc/hosts", EntryKind::File { size: 9 }));
        let image = FetchedImage {
            reference: "docker://x".into(),
            manifest_digest: String::new(),
            config: b"{}".to_vec(),
            layers: Vec::new(),
            platform: "linux/amd64".into(),
        };
        let g = generate(
            &image,
            &ImageConfig::default(),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        inject(&mut t, &g, 0, 1);
        assert!(matches!(t.get(b"tmp").unwrap().kind, Kind::Symlink(_)));
        assert!(matches!(
            t.get(b"environment").unwrap().kind,
            Kind::File { .. }
        ));
        assert_eq!(
            t.get(b"singularity").unwrap().kind,
            Kind::Symlink(b".singularity.d/runscript".as_slice().into())
        );
        let Kind::File {
            source: Source::Inline(i),
            ..
        } = t.get(b"etc/hosts").unwrap().kind
        else {
            panic!("etc/hosts is not a generated file")
        };
        assert!(t.inline(i).is_empty());
        assert!(matches!(t.get(b"var/tmp").unwrap().kind, Kind::Dir));
        assert!(matches!(
            t.get(b".singularity.d/env/94-appsbase.sh").unwrap().kind,
            Kind::File { .. }
        ));
    }
}
