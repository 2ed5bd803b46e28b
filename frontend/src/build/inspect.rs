//! Container metadata as `apptainer inspect` reports it: read from a sandbox directory or
//! from a SIF's squashfs partition (`unsquashfs -cat`, nothing mounted), and the
//! `inspect-metadata.json` object a build stores in the SIF. The JSON shape is the
//! reference's (`{"data":{"attributes":{...}},"type":"container"}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// One app's attributes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppAttributes {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub runscript: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub test: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub helpfile: String,
}

/// The container's attributes, in the reference's field order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attributes {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apps: BTreeMap<String, AppAttributes>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub runscript: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub test: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub helpfile: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub deffile: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub startscript: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Data {
    #[serde(default)]
    pub attributes: Attributes,
}

/// What `inspect --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    #[serde(default)]
    pub data: Data,
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            data: Data::default(),
            kind: "container".into(),
        }
    }
}

/// Which attributes to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Select {
    pub labels: bool,
    pub deffile: bool,
    pub runscript: bool,
    pub startscript: bool,
    pub test: bool,
    pub environment: bool,
    pub helpfile: bool,
    pub list_apps: bool,
}

impl Select {
    pub fn all() -> Select {
        Select {
            labels: true,
            deffile: true,
            runscript: true,
            startscript: true,
            test: true,
            environment: true,
            helpfile: true,
            list_apps: true,
        }
    }
}

/// Files of an image's root, read without running or mounting anything.
pub enum ImageFiles {
    Dir(PathBuf),
    Sif { path: PathBuf, offset: u64 },
}

impl ImageFiles {
    /// A file's content (`rel` is relative to `/`), None when it is missing.
    pub fn read(&self, rel: &str) -> Option<String> {
        match self {
            ImageFiles::Dir(root) => {
                let p = super::rootpath::resolve(root, rel).ok()?;
                if !p.is_file() {
                    return None;
                }
                std::fs::read(p)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            }
            ImageFiles::Sif { path, offset } => {
                let out = Command::new("unsquashfs")
                    .arg("-o")
                    .arg(offset.to_string())
                    .arg("-cat")
                    .arg(path)
                    .arg(rel.trim_start_matches('/'))
                    .output()
                    .ok()?;
                if !out.status.success() {
                    return None;
                }
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            }
        }
    }

    /// Names directly under directory `rel`, sorted; empty when it is missing.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let rel = rel.trim_matches('/');
        let mut names: Vec<String> = match self {
            ImageFiles::Dir(root) => match super::rootpath::resolve(root, rel)
                .ok()
                .and_then(|p| std::fs::read_dir(p).ok())
            {
                Some(rd) => rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                None => Vec::new(),
            },
            ImageFiles::Sif { path, offset } => {
                let Ok(out) = Command::new("unsquashfs")
                    .arg("-o")
                    .arg(offset.to_string())
                    .args(["-d", "", "-l"])
                    .arg(path)
                    .arg(rel)
                    .output()
                else {
                    return Vec::new();
                };
                let prefix = format!("{rel}/");
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.trim_start_matches('/').strip_prefix(&prefix))
                    .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                    .map(str::to_string)
                    .collect()
            }
        };
        names.sort();
        names.dedup();
        names
    }
}

/// The squashfs offset of a SIF's primary partition.
pub fn sif_squashfs_offset(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let part = sif::primary_partition(&mut f)
        .with_context(|| format!("{}: no primary partition", path.display()))?;
    if part.fs_type != sif::FsType::Squash {
        bail!("{}: the primary partition is not squashfs", path.display());
    }
    Ok(part.offset)
}

fn trimmed(s: String) -> String {
    s.trim_end_matches('\n').to_string()
}

/// Collects what `select` asks for from the image's files. `app` narrows runscript, test,
/// helpfile, labels and environment to that app; `all` reads the container's and every
/// app's attributes.
pub fn collect(files: &ImageFiles, select: Select, app: Option<&str>, all: bool) -> Metadata {
    let mut m = Metadata::default();
    let apps: Vec<String> = files
        .list("scif/apps")
        .into_iter()
        .filter(|a| !files.list(&format!("scif/apps/{a}/scif")).is_empty())
        .collect();
    if select.list_apps || all {
        for a in &apps {
            m.data.attributes.apps.entry(a.clone()).or_default();
        }
    }
    // Where each attribute is read from: the container's metadata, an app's, or (with
    // `all`) both.
    let mut prefixes: Vec<(Option<String>, String)> = Vec::new();
    match app {
        Some(a) if !all => prefixes.push((Some(a.to_string()), format!("scif/apps/{a}/scif"))),
        _ => {
            prefixes.push((None, ".singularity.d".into()));
            if all {
                for a in &apps {
                    prefixes.push((Some(a.clone()), format!("scif/apps/{a}/scif")));
                }
            }
        }
    }
    for (owner, prefix) in &prefixes {
        let read = |name: &str| files.read(&format!("{prefix}/{name}")).map(trimmed);
        let attrs = &mut m.data.attributes;
        if select.labels {
            if let Some(text) = read("labels.json") {
                let labels: BTreeMap<String, String> =
                    serde_json::from_str(&text).unwrap_or_else(|e| {
                        crate::warning!("Unable to parse labels: {e}");
                        BTreeMap::new()
                    });
                match owner {
                    Some(a) => attrs.apps.entry(a.clone()).or_default().labels = labels,
                    None => attrs.labels = labels,
                }
            }
        }
        for (wanted, name) in [
            (select.runscript, "runscript"),
            (select.test, "test"),
            (select.helpfile, "runscript.help"),
            (select.startscript && owner.is_none(), "startscript"),
        ] {
            if !wanted {
                continue;
            }
            let Some(text) = read(name) else { continue };
            match (owner, name) {
                (Some(a), _) => {
                    let e = attrs.apps.entry(a.clone()).or_default();
                    match name {
                        "runscript" => e.runscript = text,
                        "test" => e.test = text,
                        _ => e.helpfile = text,
                    }
                }
                (None, "runscript") => attrs.runscript = text,
                (None, "test") => attrs.test = text,
                (None, "runscript.help") => attrs.helpfile = text,
                (None, _) => attrs.startscript = text,
            }
        }
        if select.environment {
            let env_files: Vec<String> = files
                .list(&format!("{prefix}/env"))
                .into_iter()
                .filter(|n| {
                    (owner.is_none() && n.starts_with("10-docker") && n.ends_with(".sh"))
                        || (n.starts_with('9') && n.ends_with("-environment.sh"))
                })
                .collect();
            for n in env_files {
                let key = format!("/{prefix}/env/{n}");
                let Some(text) = read(&format!("env/{n}")) else {
                    continue;
                };
                match owner {
                    Some(a) => {
                        attrs
                            .apps
                            .entry(a.clone())
                            .or_default()
                            .environment
                            .insert(key, text);
                    }
                    None => {
                        attrs.environment.insert(key, text);
                    }
                }
            }
        }
    }
    if select.deffile {
        if let Some(text) = files
            .read(".singularity.d/Singularity")
            .or_else(|| files.read(".singularity.d/Apptainer"))
        {
            m.data.attributes.deffile = trimmed(text);
        }
    }
    m
}

/// Go's JSON encoder escapes `<`, `>` and `&` in strings; those characters appear only
/// inside strings in our output, so a plain replacement gives the same bytes.
fn go_escape(json: String) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Tab-indented, as `inspect --json` prints.
pub fn to_pretty_json(m: &Metadata) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    m.serialize(&mut ser).expect("metadata serialises");
    go_escape(String::from_utf8(out).expect("JSON is UTF-8"))
}

/// The SIF's `inspect-metadata.json` object for a built root: everything, compact.
pub fn sif_object(root: &Path) -> Vec<u8> {
    let m = collect(
        &ImageFiles::Dir(root.to_path_buf()),
        Select::all(),
        None,
        true,
    );
    go_escape(serde_json::to_string(&m).expect("metadata serialises")).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_metadata_is_read_per_attribute() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join(".singularity.d/env")).unwrap();
        std::fs::create_dir_all(r.join("scif/apps/foo/scif")).unwrap();
        std::fs::write(r.join(".singularity.d/labels.json"), "{\"A\": \"1\"}").unwrap();
        std::fs::write(r.join(".singularity.d/runscript"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(
            r.join(".singularity.d/env/90-environment.sh"),
            "export X=1\n",
        )
        .unwrap();
        std::fs::write(r.join(".singularity.d/env/01-base.sh"), "").unwrap();
        std::fs::write(r.join("scif/apps/foo/scif/runscript"), "echo foo\n").unwrap();
        let files = ImageFiles::Dir(r.to_path_buf());
        let m = collect(&files, Select::all(), None, true);
        let a = &m.data.attributes;
        assert_eq!(a.labels["A"], "1");
        assert_eq!(a.runscript, "#!/bin/sh\necho hi");
        assert_eq!(
            a.environment.keys().collect::<Vec<_>>(),
            ["/.singularity.d/env/90-environment.sh"]
        );
        assert_eq!(a.apps["foo"].runscript, "echo foo");
        let only_app = collect(
            &files,
            Select {
                runscript: true,
                ..Select::default()
            },
            Some("foo"),
            false,
        );
        assert_eq!(only_app.data.attributes.runscript, "");
        assert_eq!(only_app.data.attributes.apps["foo"].runscript, "echo foo");
    }

    #[test]
    fn json_has_the_reference_shape() {
        let mut m = Metadata::default();
        m.data.attributes.runscript = "a<b".into();
        assert_eq!(
            to_pretty_json(&m),
            "{\n\t\"data\": {\n\t\t\"attributes\": {\n\t\t\t\"runscript\": \"a\\u003cb\"\n\t\t}\n\t},\n\t\"type\": \"container\"\n}"
        );
    }
}
