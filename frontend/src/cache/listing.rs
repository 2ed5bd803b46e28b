//! What `apptainer cache list` shows and `apptainer cache clean` removes: the entries of
//! each cache kind, with their sizes and ages. Lock files and writers' temp files are
//! never entries.

use super::KINDS;
use anyhow::{bail, Context, Result};
use fs4::fs_std::FileExt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One cached item: a blob, or a converted/downloaded container file.
#[derive(Debug)]
pub struct Entry {
    /// The cache directory name (`blob`, `oci-tmp`, `library`, ...).
    pub kind: &'static str,
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

impl Entry {
    /// The TYPE column: Apptainer shows converted OCI images as `oci`.
    pub fn type_label(&self) -> &'static str {
        match self.kind {
            "oci-tmp" => "oci",
            k => k,
        }
    }
}

/// Maps `-T/--type` values to cache kinds. `all` (the default) selects every kind.
pub fn parse_types(types: &[String]) -> Result<Vec<&'static str>> {
    let mut kinds = Vec::new();
    for t in types.iter().flat_map(|t| t.split(',')).map(str::trim) {
        let selected: &[&'static str] = match t {
            "" => continue,
            "all" => KINDS,
            "blob" | "blobs" => &["blob"],
            "oci" | "oci-tmp" => &["oci-tmp"],
            "library" => &["library"],
            "shub" => &["shub"],
            "oras" => &["oras"],
            "net" => &["net"],
            "launch" => &["launch"],
            "squashfuse" => &["squashfuse"],
            other => bail!(
                "invalid cache type {other:?}: choose from all, library, oci, shub, blob, oras, net, launch, squashfuse"
            ),
        };
        for k in selected {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
    }
    if kinds.is_empty() {
        kinds.extend_from_slice(KINDS);
    }
    Ok(kinds)
}

/// Where the entries of `kind` are. The FUSE servers' data is per user in node-local tmpfs
/// (squashfuse's shared_cache.rs), whatever the cache root.
pub fn kind_dir(root: &Path, kind: &str) -> PathBuf {
    match kind {
        "blob" => root.join("blob").join("blobs").join("sha256"),
        "squashfuse" => PathBuf::from(format!(
            "/dev/shm/apptainer-squashfuse-{}",
            nix::unistd::getuid()
        )),
        _ => root.join(kind),
    }
}

/// The entries of one kind (none if its directory is absent). A squashfuse directory that
/// is not the caller's own, or not a real directory, is not ours to list or remove: the
/// servers do not use it either.
pub fn entries(root: &Path, kind: &'static str) -> Result<Vec<Entry>> {
    let dir = kind_dir(root, kind);
    if kind == "squashfuse" {
        let ours = fs::symlink_metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::getuid().as_raw());
        if !ours {
            return Ok(Vec::new());
        }
    }
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for item in read {
        let item = item.with_context(|| format!("reading {}", dir.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("tmp_") {
            continue;
        }
        let meta = fs::symlink_metadata(item.path())?;
        let size = if meta.is_dir() {
            dir_size(&item.path())
        } else {
            meta.len()
        };
        out.push(Entry {
            kind,
            name,
            path: item.path(),
            size,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Sizes as Apptainer prints them: two decimals, binary units.
pub fn human_size(size: u64) -> String {
    const KIB: f64 = 1024.0;
    let s = size as f64;
    if s < KIB * KIB {
        format!("{:.2} KiB", s / KIB)
    } else if s < KIB * KIB * KIB {
        format!("{:.2} MiB", s / (KIB * KIB))
    } else {
        format!("{:.2} GiB", s / (KIB * KIB * KIB))
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for the DATE CREATED column.
pub fn format_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    dt.format(&fmt).unwrap_or_default()
}

/// Removes one entry (file or directory) and its lock file. Returns `false`, removing
/// nothing, when a pull holds the entry's lock right now.
pub fn remove(root: &Path, entry: &Entry) -> Result<bool> {
    let lock_path = root
        .join(".locks")
        .join(format!("{}-{}.lock", entry.kind, entry.name));
    let lock = match fs::OpenOptions::new().write(true).open(&lock_path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("opening {}", lock_path.display())),
    };
    if let Some(f) = &lock {
        if !f.try_lock_exclusive().unwrap_or(false) {
            return Ok(false);
        }
    }
    let result = if entry.path.is_dir() {
        fs::remove_dir_all(&entry.path)
    } else {
        fs::remove_file(&entry.path)
    };
    result.with_context(|| format!("removing {}", entry.path.display()))?;
    if lock.is_some() {
        // Lock files would otherwise pile up, one per blob ever pulled.
        let _ = fs::remove_file(&lock_path);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_with_two_decimals() {
        assert_eq!(human_size(0), "0.00 KiB");
        assert_eq!(human_size(983), "0.96 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 / 2), "2.50 MiB");
        assert_eq!(human_size(3 << 30), "3.00 GiB");
    }

    #[test]
    fn type_names_map_to_kinds() {
        assert_eq!(parse_types(&["oci".into()]).unwrap(), ["oci-tmp"]);
        assert_eq!(
            parse_types(&["blob,library".into()]).unwrap(),
            ["blob", "library"]
        );
        assert_eq!(parse_types(&[]).unwrap().len(), KINDS.len());
        assert!(parse_types(&["bogus".into()]).is_err());
        assert!(parse_types(&[]).unwrap().contains(&"launch"));
        assert_eq!(parse_types(&["launch".into()]).unwrap(), ["launch"]);
        assert_eq!(parse_types(&["squashfuse".into()]).unwrap(), ["squashfuse"]);
        assert!(parse_types(&[]).unwrap().contains(&"squashfuse"));
    }

    #[test]
    fn temp_and_hidden_files_are_not_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("oci-tmp");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("abc"), b"sif").unwrap();
        fs::write(dir.join("tmp_123"), b"partial").unwrap();
        fs::write(dir.join(".tmp-x"), b"partial").unwrap();
        let found = entries(tmp.path(), "oci-tmp").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "abc");
        assert_eq!(found[0].size, 3);
    }
}
