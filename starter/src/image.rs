//! The container image: opened once, as the caller, with openat2; every decision (type,
//! owner, `limit container *`, SIF partition bounds, squashfs magic) is taken from that fd,
//! never from the path again. Then it becomes a detached, read-only, nosuid/nodev mount.

use crate::error::{path, sys as syserr, Result, StarterError};
use crate::loopdev;
use crate::ops::{clone_tree, new_mount};
use crate::sys::{self, Sys, MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY};
use starter::plan::{ensure, ImageKind, PlanImage, Policy};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";

pub struct Image {
    pub fd: OwnedFd,
    pub kind: ImageKind,
    /// Region of the squashfs filesystem inside the file (whole file for a bare squashfs).
    pub offset: u64,
    pub size: u64,
    pub shown: String,
}

/// Opens the image as the current fsuid (the caller) and checks it against the policy.
pub fn open(sys: &dyn Sys, img: &PlanImage, policy: &Policy) -> Result<Image> {
    let shown = img.path.to_string_lossy().into_owned();
    let refuse = |why| StarterError::Image { path: shown.clone(), why };
    // O_NONBLOCK: a FIFO in place of the image must not hang the starter.
    let sandbox = img.kind == ImageKind::Sandbox;
    let flags = if sandbox { libc::O_PATH | libc::O_DIRECTORY } else { libc::O_RDONLY | libc::O_NONBLOCK };
    let fd = sys
        .openat2(sys::AT_FDCWD, &shown, flags, 0, sys::RESOLVE_NO_MAGICLINKS)
        .map_err(path("cannot open image", &shown))?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(path("cannot stat image", &shown))?;
    let (is_dir, is_file) = (st.st_mode & libc::S_IFMT == libc::S_IFDIR, st.st_mode & libc::S_IFMT == libc::S_IFREG);
    ensure(if sandbox { is_dir } else { is_file }, refuse("is not the kind of image the plan names"))?;
    // The kernel's name for the opened file, so symlinks and `..` cannot dodge the limits.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|_| refuse("cannot resolve"))?;
    policy.check_opened_image(&real, st.st_uid, st.st_gid)?;
    let (offset, size) = match img.kind {
        ImageKind::Sandbox => (0, 0),
        kind => squashfs_region(&fd, kind, st.st_size as u64, &shown)?,
    };
    Ok(Image { fd, kind: img.kind, offset, size, shown })
}

/// Where the squashfs lies in the file: a SIF's primary partition (bounds checked by the
/// reader against the file size) or the whole file; its magic is checked there.
fn squashfs_region(fd: &OwnedFd, kind: ImageKind, len: u64, shown: &str) -> Result<(u64, u64)> {
    let refuse = |why| StarterError::Image { path: shown.to_owned(), why };
    let mut f = File::from(fd.try_clone().map_err(|_| refuse("cannot read"))?);
    let (offset, size) = match kind {
        ImageKind::Sif => {
            let part =
                sif::primary_partition(&mut f).map_err(|source| StarterError::Sif { path: shown.into(), source })?;
            ensure(part.fs_type == sif::types::FsType::Squash, refuse("primary partition is not squashfs"))?;
            (part.offset, part.size)
        }
        _ => (0, len),
    };
    let mut magic = [0u8; 4];
    f.read_exact_at(&mut magic, offset).map_err(|_| refuse("cannot read the filesystem header"))?;
    ensure(&magic == SQUASHFS_MAGIC, refuse("root filesystem is not squashfs"))?;
    Ok((offset, size))
}

/// Setuid mode: a read-only loop device and the kernel's squashfs driver.
pub fn mount_kernel(sys: &dyn Sys, image: &Image, policy: &Policy) -> Result<OwnedFd> {
    let dev = loopdev::attach(sys, image, policy)?;
    // A read-only superblock: the loop device is read-only, and a writable open fails.
    let opts = [("source", dev.node.as_str()), ("ro", "")];
    new_mount(sys, "squashfs", &opts, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV).map_err(path("cannot mount", &image.shown))
}

/// A new /dev/fuse connection and a detached FUSE mount on it, owned by `ids`, for a daemon
/// (squashfuse, fuse-overlayfs) to serve. `shared` (setuid mode) lets the starter, building
/// the root with root's fsuid, read it; the mount lives in a private mount namespace, so
/// nobody else can reach it.
pub fn mount_fuse(sys: &dyn Sys, (uid, gid): (u32, u32), shared: bool) -> Result<(OwnedFd, OwnedFd)> {
    let fuse = sys.openat2(sys::AT_FDCWD, "/dev/fuse", libc::O_RDWR, 0, sys::RESOLVE_NO_SYMLINKS);
    let fuse = fuse.map_err(path("FUSE is unavailable: cannot open", "/dev/fuse"))?;
    let (fd, uid, gid) = (fuse.as_raw_fd().to_string(), uid.to_string(), gid.to_string());
    let mut opts = vec![("source", "squashfuse"), ("fd", &fd), ("rootmode", "40000"), ("user_id", &uid)];
    opts.extend([("group_id", gid.as_str()), ("default_permissions", "")]);
    opts.extend(shared.then_some(("allow_other", "")));
    // Not read-only: fuse-overlayfs serves a writable root (squashfuse refuses writes itself).
    let tree = new_mount(sys, "fuse", &opts, MOUNT_ATTR_NODEV).map_err(syserr("cannot mount fuse"))?;
    Ok((fuse, tree))
}

/// A sandbox directory: a recursive clone of the opened directory.
pub fn mount_sandbox(sys: &dyn Sys, image: &Image, writable: bool) -> Result<OwnedFd> {
    let ro = if writable { 0 } else { MOUNT_ATTR_RDONLY };
    clone_tree(sys, image.fd.as_raw_fd(), "", true, MOUNT_ATTR_NODEV | ro)
        .map_err(path("cannot bind image", &image.shown))
}
