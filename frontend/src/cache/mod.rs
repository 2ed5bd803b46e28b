//! The user's image cache, laid out as Apptainer lays it out:
//!
//! ```text
//! <parent>/cache/            parent = $APPTAINER_CACHEDIR, else ~/.apptainer
//!   blob/                    an OCI image layout: oci-layout, index.json, blobs/sha256/<hex>
//!   oci-tmp/<key>            converted SIFs, key = sha256(manifest digest hex + arch + variant)
//!   .locks/                  one lock file per entry (never removed: removing races)
//! ```
//!
//! Invariants: an entry appears only by `rename` of a complete, verified temp file from the
//! same directory, so readers never see a partial blob or SIF, even if a writer is killed.
//! Writers of one entry are serialised by an exclusive `flock` on its lock file, so 10
//! concurrent pulls of one image download and convert it once and all find it afterwards.

pub mod digest;
pub mod growing;
pub mod interrupt;
pub mod listing;

pub use digest::{Digest, HashingReader};

use anyhow::{bail, Context, Result};
use fs4::fs_std::FileExt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The cache kinds Apptainer knows, plus two of ours: `launch`, where starts remember what
/// they read from images (`launch::image_facts`), and `squashfuse`, the FUSE servers' shared
/// data of the images they serve, which lives in /dev/shm, not under the cache root
/// (`listing::kind_dir`). We fill `blob`, `oci-tmp`, `launch` and `squashfuse`, and
/// list/clean them all.
pub const KINDS: &[&str] = &[
    "blob",
    "library",
    "oci-tmp",
    "shub",
    "oras",
    "net",
    "launch",
    "squashfuse",
];

/// The internal kinds: shown by `cache list -v` and removed by `cache clean`, but not
/// counted as container files in the summary (they hold no images).
pub const INTERNAL_KINDS: &[&str] = &["launch", "squashfuse"];

/// An open cache. With `--disable-cache` it lives in a temporary directory removed on drop.
pub struct Cache {
    root: PathBuf,
    _temp: Option<(tempfile::TempDir, interrupt::Registered)>,
}

/// A blob that is in the cache and was verified when it entered.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

impl Cache {
    /// Opens the user's cache, or a temporary one when `disable` is set or the cache
    /// directory cannot be created (Apptainer then carries on without a cache, warning).
    pub fn open(disable: bool) -> Result<Cache> {
        if disable {
            return Cache::temporary();
        }
        let root = default_root()?;
        match make_private_dir(&root) {
            Ok(()) => Ok(Cache { root, _temp: None }),
            Err(e) => {
                crate::warning!("cache disabled: cannot use {}: {e}", root.display());
                Cache::temporary()
            }
        }
    }

    /// A cache rooted at `root` (unit tests of the sources).
    #[cfg(test)]
    pub fn at(root: &Path) -> Cache {
        Cache {
            root: root.to_path_buf(),
            _temp: None,
        }
    }

    /// Opens the user's cache for `cache list/clean`, without creating it.
    pub fn existing_root() -> Result<PathBuf> {
        default_root()
    }

    fn temporary() -> Result<Cache> {
        let base = temp_base();
        let (dir, registered) = interrupt::temp(|| {
            tempfile::Builder::new()
                .prefix("sbuild-tmp-cache-")
                .tempdir_in(&base)
        })
        .with_context(|| format!("creating a temporary cache in {}", base.display()))?;
        Ok(Cache {
            root: dir.path().to_path_buf(),
            _temp: Some((dir, registered)),
        })
    }

    /// Whether this is a temporary cache (`--disable-cache`).
    pub fn is_temporary(&self) -> bool {
        self._temp.is_some()
    }

    /// The cache's directory (a temporary cache is removed with everything in it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Leaves a temporary cache on disk after this process; the caller takes over
    /// removing it.
    pub fn keep(self) {
        if let Some((t, _registered)) = self._temp {
            let _ = t.keep();
        }
    }

    /// The directory of one cache kind, created 0700 on first use.
    pub fn kind_dir(&self, kind: &str) -> Result<PathBuf> {
        let dir = self.root.join(kind);
        make_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Where the blob with this digest lives (whether or not it is there yet).
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.blobs_dir()?.join(digest.hex()))
    }

    fn blobs_dir(&self) -> Result<PathBuf> {
        let blob = self.kind_dir("blob")?;
        ensure_layout_files(&blob)?;
        let dir = blob.join("blobs").join("sha256");
        make_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// The blob if it is already cached.
    pub fn cached_blob(&self, digest: &Digest) -> Result<Option<BlobRef>> {
        let path = self.blob_path(digest)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(BlobRef {
                digest: digest.clone(),
                size: m.len(),
                path,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Starts storing a blob whose digest and size are known in advance. Returns the cached
    /// blob if it is there already (possibly after waiting for another process writing it).
    pub fn begin_blob(&self, digest: &Digest, size: Option<u64>) -> Result<BlobSlot> {
        let lock = self.lock("blob", digest.hex())?;
        if let Some(blob) = self.cached_blob(digest)? {
            return Ok(BlobSlot::Present(blob));
        }
        let dir = self.blobs_dir()?;
        remove_stale_temps(&dir, &format!(".tmp-{}-", digest.hex()));
        let (file, registered) = interrupt::temp(|| {
            tempfile::Builder::new()
                .prefix(&format!(".tmp-{}-", digest.hex()))
                .tempfile_in(&dir)
        })
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        Ok(BlobSlot::Missing(BlobWriter {
            digest: digest.clone(),
            size,
            file,
            dest: dir.join(digest.hex()),
            _registered: registered,
            _lock: lock,
        }))
    }

    /// Stores a blob whose digest is not known in advance (archive members): hashes it on
    /// the way in, then files it under its digest. Identical content may race harmlessly.
    pub fn store_unverified(&self, reader: &mut dyn Read) -> Result<BlobRef> {
        let dir = self.blobs_dir()?;
        let (mut file, _registered) = interrupt::temp(|| {
            tempfile::Builder::new()
                .prefix(".tmp-ingest-")
                .tempfile_in(&dir)
        })
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let mut hashing = HashingReader::new(reader);
        io::copy(&mut hashing, file.as_file_mut())
            .with_context(|| format!("writing a blob into {}", dir.display()))?;
        let (digest, size) = hashing.finish();
        let path = dir.join(digest.hex());
        file.as_file().sync_all().ok();
        file.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("storing blob {digest}"))?;
        Ok(BlobRef { digest, size, path })
    }

    /// Takes the exclusive lock of one entry, waiting for another holder to finish.
    pub fn lock(&self, kind: &str, key: &str) -> Result<EntryLock> {
        let dir = self.root.join(".locks");
        make_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{kind}-{key}.lock"));
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening lock file {}", path.display()))?;
            file.lock_exclusive()
                .with_context(|| format!("locking {}", path.display()))?;
            // `cache clean` removes lock files of the entries it removes. If it removed
            // this one while we waited, our lock is on an orphan inode that a newcomer
            // would not see: start again on the current file.
            let same = match fs::metadata(&path) {
                Ok(m) => m.ino() == file.metadata()?.ino() && m.dev() == file.metadata()?.dev(),
                Err(_) => false,
            };
            if same {
                return Ok(EntryLock { _file: file });
            }
        }
    }

    /// The converted-SIF entry for a cache key under `oci-tmp/`.
    pub fn sif_entry(&self, key: &str) -> Result<PathBuf> {
        Ok(self.kind_dir("oci-tmp")?.join(key))
    }

    /// Removes what a killed conversion into this entry left (the SIF writer's
    /// `.<key>.tmp-<pid>`). Call only while holding the entry's lock.
    pub fn remove_stale_sif_temps(&self, key: &str) -> Result<()> {
        remove_stale_temps(&self.kind_dir("oci-tmp")?, &format!(".{key}.tmp-"));
        Ok(())
    }
}

/// Holds an entry's lock until dropped (the kernel releases it if the process dies).
pub struct EntryLock {
    _file: File,
}

/// Result of [`Cache::begin_blob`].
pub enum BlobSlot {
    Present(BlobRef),
    Missing(BlobWriter),
}

/// A blob being written: a temp file in the blob directory, renamed only once verified.
pub struct BlobWriter {
    digest: Digest,
    size: Option<u64>,
    file: tempfile::NamedTempFile,
    dest: PathBuf,
    _registered: interrupt::Registered,
    _lock: EntryLock,
}

impl BlobWriter {
    /// Copies `reader` into the temp file, replacing what an earlier attempt wrote, and
    /// checks digest and size. `on_bytes` sees the running count (progress bars).
    pub fn fill(&mut self, reader: &mut dyn Read, on_bytes: &dyn Fn(u64)) -> Result<()> {
        let f = self.file.as_file_mut();
        f.set_len(0)?;
        f.rewind()?;
        let limit = self.size.map(|s| s + 1).unwrap_or(u64::MAX);
        let mut hashing = HashingReader::new(reader.take(limit));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = hashing.read(&mut buf)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n]).map_err(|source| BlobError::Write {
                digest: self.digest.to_string(),
                source,
            })?;
            on_bytes(hashing.count());
        }
        let (got, count) = hashing.finish();
        if let Some(size) = self.size {
            if count != size {
                bail!(BlobError::SizeMismatch {
                    digest: self.digest.to_string(),
                    expected: size,
                    got: count
                });
            }
        }
        if got != self.digest {
            bail!(BlobError::DigestMismatch {
                expected: self.digest.to_string(),
                got: got.to_string()
            });
        }
        Ok(())
    }

    /// The temp file being written (readers may follow it: `growing`).
    pub fn temp_path(&self) -> &Path {
        self.file.path()
    }

    /// Files the verified blob under its digest.
    pub fn commit(self) -> Result<BlobRef> {
        let size = self.file.as_file().metadata()?.len();
        self.file.as_file().sync_all().ok();
        self.file
            .persist(&self.dest)
            .map_err(|e| e.error)
            .with_context(|| format!("storing blob {}", self.digest))?;
        Ok(BlobRef {
            digest: self.digest,
            size,
            path: self.dest,
        })
    }
}

/// Why a blob was refused. It is never cached in either case.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {expected}: digest mismatch (the data hashes to {got}); not cached")]
    DigestMismatch { expected: String, got: String },
    #[error("blob {digest}: size mismatch (expected {expected} bytes, got {got}); not cached")]
    SizeMismatch {
        digest: String,
        expected: u64,
        got: u64,
    },
    /// A local write failed (e.g. the disk is full): downloading again would not help.
    #[error("writing blob {digest} into the cache")]
    Write { digest: String, source: io::Error },
}

/// `$APPTAINER_CACHEDIR/cache`, else `$APPTAINER_CONFIGDIR/cache`, else `~/.apptainer/cache`.
fn default_root() -> Result<PathBuf> {
    if let Some(dir) = non_empty_env("APPTAINER_CACHEDIR") {
        return Ok(PathBuf::from(dir).join("cache"));
    }
    if let Some(dir) = non_empty_env("APPTAINER_CONFIGDIR") {
        return Ok(PathBuf::from(dir).join("cache"));
    }
    Ok(home_dir()?.join(".apptainer").join("cache"))
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The caller's home from the password database (as Apptainer does), else `$HOME`.
pub fn home_dir() -> Result<PathBuf> {
    let uid = nix::unistd::getuid();
    if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
        return Ok(user.dir);
    }
    non_empty_env("HOME")
        .map(PathBuf::from)
        .context("cannot find the home directory of the current user")
}

/// Removes `path` once the process `pid` has exited: for temporary files of a container
/// start (a `--disable-cache` cache, an extracted image), when the frontend becomes the
/// starter (exec) or hands over to one, so nothing of ours is left to remove them at the
/// end, as the reference's runtime parent does. A shell loop, not a thread or a fork of
/// ours: it must outlive an exec, and a fork of a threaded process may not allocate. Its
/// own process group keeps the terminal's Ctrl-C from ending it before the container is done.
pub fn remove_after_exit(path: &Path, pid: u32) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "while [ -d \"/proc/$1\" ]; do sleep 0.2; done; rm -rf -- \"$2\"",
            "apptainer-cleanup",
            &pid.to_string(),
        ])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .context("cannot start the clean-up watcher")
}

/// Where temporary files go: `$APPTAINER_TMPDIR`, else `$TMPDIR`, else /tmp.
pub fn temp_base() -> PathBuf {
    non_empty_env("APPTAINER_TMPDIR")
        .or_else(|| non_empty_env("TMPDIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Creates `dir` and missing parents with mode 0700 (existing ones keep their mode).
fn make_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// The blob cache is an OCI image layout; tools such as skopeo and umoci can read it.
fn ensure_layout_files(blob_dir: &Path) -> Result<()> {
    let files: [(&str, &str); 2] = [
        ("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", r#"{"schemaVersion":2,"manifests":[]}"#),
    ];
    for (name, content) in files {
        let path = blob_dir.join(name);
        if path.exists() {
            continue;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(blob_dir)?;
        tmp.write_all(content.as_bytes())?;
        // Another process may have created it meanwhile; either copy is identical.
        tmp.persist(&path).map_err(|e| e.error)?;
    }
    Ok(())
}

/// Removes temp files a killed writer of this entry left behind. Only called while holding
/// the entry's lock, so no live writer owns them.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_in(dir: &Path) -> Cache {
        Cache {
            root: dir.to_path_buf(),
            _temp: None,
        }
    }

    #[test]
    fn verified_blob_is_filed_under_its_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache_in(tmp.path());
        let d = Digest::of_bytes(b"layer");
        let BlobSlot::Missing(mut w) = cache.begin_blob(&d, Some(5)).unwrap() else {
            panic!("blob should be missing")
        };
        w.fill(&mut &b"layer"[..], &|_| {}).unwrap();
        let blob = w.commit().unwrap();
        assert_eq!(fs::read(&blob.path).unwrap(), b"layer");
        assert!(matches!(
            cache.begin_blob(&d, Some(5)).unwrap(),
            BlobSlot::Present(_)
        ));
        assert!(tmp.path().join("blob/oci-layout").exists());
    }

    #[test]
    fn mismatching_blob_is_refused_and_not_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache_in(tmp.path());
        let d = Digest::of_bytes(b"layer");
        let BlobSlot::Missing(mut w) = cache.begin_blob(&d, Some(5)).unwrap() else {
            panic!("blob should be missing")
        };
        let err = w.fill(&mut &b"LAYER"[..], &|_| {}).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        let err = w.fill(&mut &b"layer!"[..], &|_| {}).unwrap_err();
        assert!(err.to_string().contains("size mismatch"), "{err}");
        drop(w);
        assert!(cache.cached_blob(&d).unwrap().is_none());
        let left: Vec<_> = fs::read_dir(tmp.path().join("blob/blobs/sha256"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
    }
}
