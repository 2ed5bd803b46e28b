//! Docker-format credential files (`{"auths": {"host": {"auth": base64(user:pass)}}}`):
//! `~/.apptainer/docker-config.json` written by `apptainer registry login`, an `--authfile`,
//! and `~/.docker/config.json` written by `docker login`. Writes keep every other key,
//! go through a 0600 temp file and a rename, and never leave a half-written file.

use crate::registry::auth::Credentials;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use fs4::fs_std::FileExt;
use serde_json::{Map, Value};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Files larger than this are not credential files.
const MAX_FILE: u64 = 4 << 20;

/// The registry key as Docker normalises it: no scheme, no path, Docker Hub as `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k
        .strip_prefix("docker://")
        .or_else(|| k.strip_prefix("oras://"))
        .unwrap_or(k);
    let k = k.trim_start_matches("//");
    let host = k.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// A credential file's JSON, or an empty document when the file does not exist.
fn read_doc(path: &Path) -> Result<Map<String, Value>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if meta.len() > MAX_FILE {
        bail!("{}: too large for a credential file", path.display());
    }
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if text.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    // serde_json's message names a position, never the content: no secret can leak here.
    match serde_json::from_slice::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => bail!("{}: not a JSON object", path.display()),
        Err(e) => bail!("{}: invalid JSON ({e})", path.display()),
    }
}

/// Decodes one `auths` entry: `auth` (base64 `user:pass`) or `username`/`password`.
fn entry_credentials(entry: &Value) -> Option<Credentials> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (username, password) = raw.split_once(':')?;
        return Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    let username = entry.get("username").and_then(Value::as_str)?;
    let password = entry.get("password").and_then(Value::as_str)?;
    Some(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// The credentials `path` holds for `host`, if any.
pub fn lookup(path: &Path, host: &str) -> Result<Option<Credentials>> {
    let doc = read_doc(path)?;
    let want = normalize_host(host);
    let Some(Value::Object(auths)) = doc.get("auths") else {
        return Ok(None);
    };
    for (key, entry) in auths {
        if normalize_host(key) == want {
            if let Some(c) = entry_credentials(entry) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Every registry `path` has credentials for, with the username.
pub fn list(path: &Path) -> Result<Vec<(String, String)>> {
    let doc = read_doc(path)?;
    let mut out = Vec::new();
    if let Some(Value::Object(auths)) = doc.get("auths") {
        for (key, entry) in auths {
            if let Some(Credentials::Basic { username, .. }) = entry_credentials(entry) {
                out.push((normalize_host(key), username));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Stores `username`/`password` for `host`, replacing any entry for the same registry.
pub fn store(path: &Path, host: &str, username: &str, password: &str) -> Result<()> {
    let _lock = lock_for(path)?;
    let mut doc = read_doc(path)?;
    let host = normalize_host(host);
    let auths = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        bail!("{}: \"auths\" is not an object", path.display());
    };
    auths.retain(|k, _| normalize_host(k) != host);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut entry = Map::new();
    entry.insert("auth".into(), Value::String(auth));
    auths.insert(host, Value::Object(entry));
    write_private(path, &doc)
}

/// Removes the entry for `host`; false if there was none.
pub fn remove(path: &Path, host: &str) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let _lock = lock_for(path)?;
    let mut doc = read_doc(path)?;
    let host = normalize_host(host);
    let Some(Value::Object(auths)) = doc.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| normalize_host(k) != host);
    if auths.len() == before {
        return Ok(false);
    }
    write_private(path, &doc)?;
    Ok(true)
}

/// Writes `doc` to `path` as a 0600 file, atomically; creates the parent 0700.
fn write_private(path: &Path, doc: &Map<String, Value>) -> Result<()> {
    let parent = parent_of(path);
    private_dir(&parent)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-auth-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut text = serde_json::to_vec_pretty(doc)?;
    text.push(b'\n');
    tmp.write_all(&text)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Serialises the read-modify-write of `path` between processes (two logins at once must
/// not lose one): an exclusive lock on `.<name>.lock` beside it, released on drop.
fn lock_for(path: &Path) -> Result<fs::File> {
    let parent = parent_of(path);
    private_dir(&parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock = parent.join(format!(".{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .with_context(|| format!("opening {}", lock.display()))?;
    file.lock_exclusive()
        .with_context(|| format!("locking {}", lock.display()))?;
    Ok(file)
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` (and parents) mode 0700 if missing.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn hosts_normalise_as_docker_does() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("docker://"), "docker.io");
        assert_eq!(normalize_host("oras://127.0.0.1:5001/x"), "127.0.0.1:5001");
        assert_eq!(normalize_host("Quay.IO"), "quay.io");
    }

    #[test]
    fn store_lookup_remove_round_trip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(
            &path,
            r#"{"credsStore":"x","auths":{"https://quay.io":{"username":"q","password":"qp"}}}"#,
        )
        .unwrap();
        store(&path, "docker://127.0.0.1:5001", "alice", "pw:with:colons").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        match lookup(&path, "127.0.0.1:5001").unwrap() {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!(username, "alice");
                assert_eq!(password, "pw:with:colons");
            }
            other => panic!("{other:?}"),
        }
        assert!(lookup(&path, "quay.io").unwrap().is_some());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("credsStore"));
        assert!(remove(&path, "127.0.0.1:5001").unwrap());
        assert!(!remove(&path, "127.0.0.1:5001").unwrap());
        assert!(lookup(&path, "127.0.0.1:5001").unwrap().is_none());
        assert_eq!(list(&path).unwrap(), vec![("quay.io".into(), "q".into())]);
    }

    #[test]
    fn broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        fs::write(&path, "{not json").unwrap();
        let err = lookup(&path, "x").unwrap_err().to_string();
        assert!(err.contains("c.json"), "{err}");
    }

    #[test]
    fn concurrent_stores_lose_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::thread::scope(|scope| {
            for i in 0..8 {
                let path = &path;
                scope.spawn(move || store(path, &format!("host{i}:5000"), "u", "p").unwrap());
            }
        });
        assert_eq!(list(&path).unwrap().len(), 8);
    }
}
