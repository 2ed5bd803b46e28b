//! Opening admin files so that only root can have decided their content.
//!
//! `read_trusted` walks the path from `/` down. Each directory and the file itself is opened
//! with `O_NOFOLLOW`, and the checks are made on the opened handle (`fstat`), never on a
//! second lookup of the name: owner uid 0, no group or other write bit, not a symlink; the
//! file must be a regular file no larger than the cap. The walk is top-down on purpose: once a
//! directory is known to be root-owned and writable only by root, nobody else can swap the
//! entries below it, so re-resolving the verified prefix when opening the next component
//! always reaches the same objects. Nothing here reads the environment.
//!
//! `read_plain` is the unprivileged frontend's variant: same size cap and file-type check,
//! no ownership rules.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::ops::Deref;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::directives::Conf;
use crate::error::ConfError;
use crate::parse::parse_bytes;

/// Largest apptainer.conf accepted (the shipped one is about 10 KiB).
pub const MAX_CONF_BYTES: u64 = 1 << 20;

/// Permission bits that would let someone other than the owner change an entry.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// Permission bit for other users' read access.
const OTHER_READ: u32 = 0o004;

/// An apptainer.conf that passed [`load_trusted`]'s ownership checks, then parsed strictly.
/// Its field is private and it has no `Default`, `Clone` or deserializer, so holding one
/// proves the checks ran.
#[derive(Debug)]
pub struct TrustedConf(Conf);

impl Deref for TrustedConf {
    type Target = Conf;
    fn deref(&self) -> &Conf {
        &self.0
    }
}

/// Loads apptainer.conf for the setuid starter: every component of `path` root-owned and not
/// group- or other-writable, no symlinks, a regular file of at most [`MAX_CONF_BYTES`].
/// If the file is not world-readable, error messages leave out its keys and values.
pub fn load_trusted(path: impl AsRef<Path>) -> Result<TrustedConf, ConfError> {
    let path = path.as_ref();
    let (bytes, meta) = read_trusted(path, MAX_CONF_BYTES)?;
    let world_readable = meta.mode() & OTHER_READ != 0;
    parse_bytes(&shown(path), &bytes, world_readable).map(TrustedConf)
}

/// Loads apptainer.conf without ownership checks, for unprivileged code (the frontend).
/// Never use its result for a privileged decision.
pub fn load(path: impl AsRef<Path>) -> Result<Conf, ConfError> {
    let path = path.as_ref();
    let bytes = read_plain(path, MAX_CONF_BYTES)?;
    parse_bytes(&shown(path), &bytes, true)
}

/// Reads `path` after the top-down ownership walk described in the module header.
/// Returns the content and the file's metadata, taken from the opened handle.
pub(crate) fn read_trusted(path: &Path, max: u64) -> Result<(Vec<u8>, Metadata), ConfError> {
    let names = normal_components(path)?;
    let mut current = PathBuf::from("/");
    check_dir(&current, &open_dir(&current)?)?;
    let Some((last, dirs)) = names.split_last() else {
        return Err(ConfError::NotRegularFile { path: shown(path) });
    };
    for name in dirs {
        current.push(name);
        check_dir(&current, &open_dir(&current)?)?;
    }
    current.push(last);
    let file = open_file(&current)?;
    let meta = stat(&current, &file)?;
    if !meta.is_file() {
        return Err(ConfError::NotRegularFile {
            path: shown(&current),
        });
    }
    check_owner_and_mode(&current, &meta)?;
    let bytes = read_file(&current, file, &meta, max)?;
    Ok((bytes, meta))
}

/// Reads `path` with the size cap and regular-file check but no ownership rules.
pub(crate) fn read_plain(path: &Path, max: u64) -> Result<Vec<u8>, ConfError> {
    let file = open_file(path)?;
    let meta = stat(path, &file)?;
    read_file(path, file, &meta, max)
}

/// The path's names below `/`; refuses relative paths and `.`/`..`, whose meaning would
/// depend on what the walk has not checked yet.
fn normal_components(path: &Path) -> Result<Vec<&std::ffi::OsStr>, ConfError> {
    let refuse = || ConfError::NotNormalAbsolute { path: shown(path) };
    let raw = path.to_str().ok_or_else(refuse)?;
    if !path.is_absolute() || raw.split('/').any(|c| c == "." || c == "..") {
        return Err(refuse());
    }
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => names.push(name),
            _ => return Err(refuse()),
        }
    }
    Ok(names)
}

fn open_dir(path: &Path) -> Result<File, ConfError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| open_error(path, e, true))
}

/// Opens without following a final symlink, and with O_NONBLOCK so that a FIFO planted where
/// the file should be cannot block the starter before the file type is checked.
fn open_file(path: &Path) -> Result<File, ConfError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| open_error(path, e, false))
}

/// Turns an open failure into the error that names the rule. The `lstat` here only chooses
/// the wording; the decision was the kernel's refusal to follow the link.
fn open_error(path: &Path, err: io::Error, want_dir: bool) -> ConfError {
    let is_link = || {
        path.symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    };
    match err.raw_os_error() {
        Some(libc::ELOOP) => ConfError::Symlink { path: shown(path) },
        Some(libc::ENOTDIR) if is_link() => ConfError::Symlink { path: shown(path) },
        Some(libc::ENOTDIR) if want_dir => ConfError::NotDirectory { path: shown(path) },
        _ => ConfError::Io {
            path: shown(path),
            op: "open",
            source: err,
        },
    }
}

fn stat(path: &Path, file: &File) -> Result<Metadata, ConfError> {
    file.metadata().map_err(|source| ConfError::Io {
        path: shown(path),
        op: "fstat",
        source,
    })
}

fn check_dir(path: &Path, dir: &File) -> Result<(), ConfError> {
    let meta = stat(path, dir)?;
    if !meta.is_dir() {
        return Err(ConfError::NotDirectory { path: shown(path) });
    }
    check_owner_and_mode(path, &meta)
}

fn check_owner_and_mode(path: &Path, meta: &Metadata) -> Result<(), ConfError> {
    if meta.uid() != 0 {
        return Err(ConfError::NotRootOwned {
            path: shown(path),
            uid: meta.uid(),
        });
    }
    if meta.mode() & GROUP_OTHER_WRITE != 0 {
        return Err(ConfError::WritableByOthers {
            path: shown(path),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Reads at most `max` bytes; the `fstat` size is checked first, and the read is capped too
/// in case the file grows in between.
fn read_file(path: &Path, file: File, meta: &Metadata, max: u64) -> Result<Vec<u8>, ConfError> {
    if !meta.is_file() {
        return Err(ConfError::NotRegularFile { path: shown(path) });
    }
    if meta.len() > max {
        return Err(ConfError::TooLarge {
            path: shown(path),
            max,
        });
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ConfError::Io {
            path: shown(path),
            op: "read",
            source,
        })?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > max) {
        return Err(ConfError::TooLarge {
            path: shown(path),
            max,
        });
    }
    Ok(bytes)
}

/// The path as it appears in error messages, with control characters escaped so a crafted
/// name cannot forge terminal output.
pub(crate) fn shown(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
