//! A [`Sink`] that extracts the merged tree into a directory (a sandbox).
//!
//! Every name is created relative to an fd of its parent directory, and parents are
//! opened one component at a time with `O_NOFOLLOW`, so nothing in the image (a
//! symlink swapped in on disk, a `..`) can make us write outside the sandbox; the tree
//! has already resolved the image's own symlinks inside the root. Directories are made
//! `0700` while we fill them and get their final mode, owner and time last, deepest
//! first, so read-only directories of the image do not stop the extraction. Not as
//! root: ownership is the caller's, device nodes are skipped, and only the xattrs the
//! kernel lets a user set are kept.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::emit::Sink;
use super::tree::{Kind, Meta};

/// Extracts into an existing, empty directory.
pub struct DirSink {
    root: OwnedFd,
    as_root: bool,
    fix_perms: bool,
    /// Directories and their final metadata, parents first.
    dirs: Vec<(Vec<u8>, Meta)>,
    /// The last parent directory opened, reused for its siblings.
    cached: Option<(Vec<u8>, OwnedFd)>,
    skipped_devices: usize,
    restrictive_dirs: usize,
}

fn show(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path))
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl DirSink {
    /// Extracts into `root` (opened by the caller); `as_root` restores ownership and
    /// device nodes; `fix_perms` gives the owner rwX on everything, as `--fix-perms`.
    pub fn new(root: OwnedFd, as_root: bool, fix_perms: bool) -> Self {
        DirSink {
            root,
            as_root,
            fix_perms,
            dirs: Vec::new(),
            cached: None,
            skipped_devices: 0,
            restrictive_dirs: 0,
        }
    }

    /// Device nodes skipped (not root) and directories the owner cannot write.
    pub fn counts(&self) -> (usize, usize) {
        (self.skipped_devices, self.restrictive_dirs)
    }

    /// Opens directory `path` (relative to the root) without following any symlink.
    fn open_dir(&self, path: &[u8]) -> io::Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rfs::openat(&self.root, c".", flags, Mode::empty())?;
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            fd = rfs::openat(&fd, comp, flags, Mode::empty())?;
        }
        Ok(fd)
    }

    /// The parent directory of `path` and the final name.
    fn parent<'p>(&mut self, path: &'p [u8]) -> Result<(OwnedFd, &'p [u8])> {
        let (dir, name) = split(path);
        if let Some((p, fd)) = &self.cached {
            if p.as_slice() == dir {
                return Ok((fd.try_clone()?, name));
            }
        }
        let fd = self
            .open_dir(dir)
            .with_context(|| format!("opening the directory of {}", show(path)))?;
        self.cached = Some((dir.to_vec(), fd.try_clone()?));
        Ok((fd, name))
    }

    fn final_mode(&self, meta: &Meta, is_dir: bool) -> u32 {
        let mut mode = meta.mode & 0o7777;
        if self.fix_perms {
            mode |= 0o600;
            if is_dir || mode & 0o111 != 0 {
                mode |= 0o100;
            }
        }
        mode
    }

    fn set_owner_and_xattrs(&self, fd: impl AsFd, meta: &Meta, path: &[u8]) -> Result<()> {
        if self.as_root {
            let uid = rustix::fs::Uid::from_raw(meta.uid);
            let gid = rustix::fs::Gid::from_raw(meta.gid);
            rfs::fchown(&fd, Some(uid), Some(gid))
                .with_context(|| format!("setting the owner of {}", show(path)))?;
        }
        for (name, value) in meta.xattrs.iter().flat_map(|x| x.iter()) {
            if let Err(e) = rfs::fsetxattr(&fd, name.as_slice(), value, rfs::XattrFlags::empty()) {
                crate::debug!(
                    "not keeping xattr {:?} of {}: {e}",
                    String::from_utf8_lossy(name),
                    show(path)
                );
            }
        }
        Ok(())
    }
}

impl Sink for DirSink {
    fn dir(&mut self, path: &[u8], meta: &Meta) -> Result<()> {
        if !path.is_empty() {
            let (parent, name) = self.parent(path)?;
            rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                .with_context(|| format!("creating directory {}", show(path)))?;
        }
        if meta.mode & 0o700 != 0o700 && !self.fix_perms {
            self.restrictive_dirs += 1;
        }
        self.dirs.push((path.to_vec(), meta.clone()));
        Ok(())
    }

    fn file(&mut self, path: &[u8], meta: &Meta, size: u64, data: &mut dyn Read) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&parent, name, flags, Mode::from_raw_mode(0o600))
            .with_context(|| format!("creating {}", show(path)))?;
        let mut file = File::from(fd);
        let copied = io::copy(&mut data.take(size), &mut file)
            .with_context(|| format!("writing {}", show(path)))?;
        if copied != size {
            anyhow::bail!("{} is truncated in its layer", show(path));
        }
        self.set_owner_and_xattrs(&file, meta, path)?;
        // After chown, which clears setuid/setgid bits.
        rfs::fchmod(&file, Mode::from_raw_mode(self.final_mode(meta, false)))
            .with_context(|| format!("setting the mode of {}", show(path)))?;
        rfs::futimens(&file, &timestamps(meta.mtime))?;
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        rfs::symlinkat(target, &parent, name)
            .with_context(|| format!("creating symlink {}", show(path)))?;
        if self.as_root {
            let uid = rustix::fs::Uid::from_raw(meta.uid);
            let gid = rustix::fs::Gid::from_raw(meta.gid);
            rfs::chownat(
                &parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rfs::utimensat(
            &parent,
            name,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    fn special(&mut self, path: &[u8], meta: &Meta, kind: &Kind) -> Result<()> {
        let (ftype, dev) = match kind {
            Kind::Char { major, minor } => {
                (FileType::CharacterDevice, rfs::makedev(*major, *minor))
            }
            Kind::Block { major, minor } => (FileType::BlockDevice, rfs::makedev(*major, *minor)),
            _ => (FileType::Fifo, 0),
        };
        if ftype != FileType::Fifo && !self.as_root {
            self.skipped_devices += 1;
            return Ok(());
        }
        let (parent, name) = self.parent(path)?;
        rfs::mknodat(&parent, name, ftype, Mode::from_raw_mode(0o600), dev)
            .with_context(|| format!("creating {}", show(path)))?;
        if self.as_root {
            let uid = rustix::fs::Uid::from_raw(meta.uid);
            let gid = rustix::fs::Gid::from_raw(meta.gid);
            rfs::chownat(
                &parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        let mode = Mode::from_raw_mode(self.final_mode(meta, false));
        rfs::chmodat(&parent, name, mode, AtFlags::empty())?;
        rfs::utimensat(
            &parent,
            name,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    fn hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<()> {
        let (tdir, tname) = split(target);
        let tparent = self
            .open_dir(tdir)
            .with_context(|| format!("opening the directory of {}", show(target)))?;
        let (parent, name) = self.parent(path)?;
        rfs::linkat(&tparent, tname, &parent, name, AtFlags::empty())
            .with_context(|| format!("linking {} to {}", show(path), show(target)))?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.cached = None;
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let fd = self
                .open_dir(path)
                .with_context(|| format!("opening directory {}", show(path)))?;
            // O_PATH fds cannot be fchmod'ed; reopen the directory for reading.
            let fd = rfs::openat(
                &fd,
                c".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            self.set_owner_and_xattrs(&fd, meta, path)?;
            rfs::fchmod(&fd, Mode::from_raw_mode(self.final_mode(meta, true)))
                .with_context(|| format!("setting the mode of {}", show(path)))?;
            rfs::futimens(&fd, &timestamps(meta.mtime))?;
        }
        Ok(())
    }
}
