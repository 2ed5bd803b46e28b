//! What a start needs to know from inside a SIF or squashfs image before the starter mounts
//! it: the image's /etc/passwd and /etc/group (extended with the caller's entry) and whether
//! it has /bin/sh. Reading them costs three `unsquashfs` runs, the largest part of the
//! frontend's share of a start, so the answers are kept per user in the cache, keyed by the
//! image file's identity (device, inode, size, mtime, ctime): an unchanged image is never
//! read twice. The entry is the user's own file and only shapes the user's own container
//! view (the starter still checks every path and id), so trusting it is safe.

use super::image::{self, ResolvedImage};
use serde::{Deserialize, Serialize};
use starter::plan::ImageKind;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The facts, read or remembered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    pub passwd: Option<String>,
    pub group: Option<String>,
    pub has_shell: bool,
    /// `/.singularity.d/env/*.sh` (name, text), for `exec` without a shell (`direct.rs`);
    /// `None` when anything there is not a readable regular file.
    pub env_scripts: Option<Vec<(String, String)>>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    identity: String,
    facts: ImageFacts,
}

/// The facts of `img`: from a sandbox directly, from the cache when the image file is
/// unchanged, else by reading the image (and then remembered).
pub fn read(img: &ResolvedImage) -> ImageFacts {
    if img.kind == ImageKind::Sandbox {
        return read_from_image(img);
    }
    let identity = identity(img);
    let slot = identity.as_ref().and_then(|id| entry_path(id));
    if let (Some(id), Some(path)) = (&identity, &slot) {
        if let Some(facts) = load(path, id) {
            return facts;
        }
    }
    let facts = read_from_image(img);
    if let (Some(id), Some(path)) = (identity, slot) {
        store(&path, id, &facts);
    }
    facts
}

fn read_from_image(img: &ResolvedImage) -> ImageFacts {
    let probe = image::ShellProbe::start(img);
    let mut etc = image::read_files(img, &["etc/passwd", "etc/group"]).into_iter();
    let (has_shell, env_names) = probe.finish(img);
    ImageFacts {
        passwd: etc.next().flatten(),
        group: etc.next().flatten(),
        has_shell,
        env_scripts: env_names.and_then(|names| read_env_scripts(img, names)),
    }
}

fn read_env_scripts(img: &ResolvedImage, names: Vec<String>) -> Option<Vec<(String, String)>> {
    let paths: Vec<String> = names
        .iter()
        .map(|n| format!("{}/{n}", image::ENV_DIR))
        .collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let texts = image::read_files(img, &refs);
    names
        .into_iter()
        .zip(texts)
        .map(|(n, t)| Some((n, t?)))
        .collect()
}

/// Changes whenever the file's content may have: a rewrite in place changes mtime and
/// ctime, a replacement changes the inode.
fn identity(img: &ResolvedImage) -> Option<String> {
    let m = std::fs::metadata(&img.path).ok()?;
    // The leading version changes whenever ImageFacts gains a field.
    Some(format!(
        "2:{}:{}:{}:{}.{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

fn entry_path(identity: &str) -> Option<PathBuf> {
    use sha2::Digest;
    let dir = crate::cache::Cache::open(false)
        .ok()?
        .kind_dir("launch")
        .ok()?;
    let name = hex::encode(sha2::Sha256::digest(identity.as_bytes()));
    Some(dir.join(format!("{name}.json")))
}

fn load(path: &std::path::Path, identity: &str) -> Option<ImageFacts> {
    let bytes = std::fs::read(path).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    (entry.identity == identity).then_some(entry.facts)
}

/// Best effort: a start never fails because its answers could not be remembered. Written
/// to a temporary file and renamed, so concurrent starts never read half an entry.
fn store(path: &std::path::Path, identity: String, facts: &ImageFacts) {
    let Some(dir) = path.parent() else { return };
    let Ok(json) = serde_json::to_vec(&Entry {
        identity,
        facts: facts.clone(),
    }) else {
        return;
    };
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    if std::io::Write::write_all(&mut tmp, &json).is_ok() {
        let _ = tmp.persist(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_for_another_identity_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        let facts = ImageFacts {
            passwd: Some("root:x:0:0::/root:/bin/sh\n".into()),
            group: None,
            has_shell: true,
            env_scripts: None,
        };
        store(&path, "1:2:3:4.5:6.7".into(), &facts);
        assert_eq!(load(&path, "1:2:3:4.5:6.7"), Some(facts));
        assert_eq!(load(&path, "1:2:3:4.5:6.8"), None);
    }

    #[test]
    fn rewriting_the_image_changes_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.sif");
        std::fs::write(&path, b"one").unwrap();
        let img = ResolvedImage {
            path: path.clone(),
            kind: ImageKind::Sif,
        };
        let before = identity(&img).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&path, b"two").unwrap();
        assert_ne!(identity(&img).unwrap(), before);
    }
}
