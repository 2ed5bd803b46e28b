//! The container image: opened once, as the caller, with openat2; every decision (type,
//! owner, `limit container *`, SIF partition bounds, squashfs magic) is taken from that fd,
//! never from the path again. Then it becomes a detached, read-only, nosuid/nodev mount:
//! through a kernel loop device, FUSE, or a bind of a sandbox directory.

use crate::error::{path, sys as syserr, Result, StarterError};
use crate::ops::{clone_tree, new_mount};
use crate::sys::{self, Errno, Sys, LOOP_FLAGS, MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY, RESOLVE_NO_SYMLINKS};
use starter::plan::{ensure, ImageKind, PlanImage, Policy};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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
    let dev = attach_loop(sys, image, policy)?;
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

// Kernel loop devices for the setuid starter: read-only, autoclear, offset and size taken
// from the image header the starter read itself. With `shared loop devices = yes` an
// existing device already backing the same file region read-only is reused, so parallel
// containers of one image share the kernel's page cache and decompressed pages.

/// An attached loop device: the open fd (keeps it from being autocleared until mounted)
/// and its node path for the `source` option of the filesystem context.
struct LoopDevice {
    _fd: OwnedFd,
    node: String,
}

const ATTEMPTS: u32 = 16;

/// Attaches the image's squashfs region (or reuses a shared device), below `max loop devices`.
fn attach_loop(sys: &dyn Sys, image: &Image, policy: &Policy) -> Result<LoopDevice> {
    let (offset, size, file) = (image.offset, image.size, image.fd.as_fd());
    let max = u32::try_from(policy.conf.max_loop_devices).unwrap_or(u32::MAX);
    let st = nix::sys::stat::fstat(file.as_raw_fd()).map_err(syserr("cannot stat image"))?;
    let open = |node: &str, flags| {
        sys.openat2(sys::AT_FDCWD, node, flags, 0, RESOLVE_NO_SYMLINKS).map_err(path("cannot open", node))
    };
    let ctl = open("/dev/loop-control", libc::O_RDWR)?;
    for _ in 0..ATTEMPTS {
        // Looked for again after every lost race: with many starts of one image at once, the
        // device that won is most likely backing this very image by now.
        if let Some(dev) = policy.conf.shared_loop_devices.then(|| find_shared(sys, &st, offset, size, max)).flatten() {
            return Ok(dev);
        }
        let n = sys::loop_get_free(ctl.as_fd()).map_err(syserr("cannot get a free loop device"))?;
        ensure(n < max, StarterError::Refused("no loop device below 'max loop devices' is free"))?;
        let node = format!("/dev/loop{n}");
        let fd = open(&node, libc::O_RDONLY)?;
        // Another process may configure the same free device first: EBUSY, try the next.
        match sys::loop_configure(fd.as_fd(), file, offset, size) {
            Ok(()) => return Ok(LoopDevice { _fd: fd, node }),
            Err(Errno::EBUSY) => continue,
            Err(e) => return Err(path("cannot configure", &node)(e)),
        }
    }
    Err(StarterError::Refused("loop devices stayed busy; try again"))
}

fn find_shared(sys: &dyn Sys, st: &libc::stat, offset: u64, size: u64, max: u32) -> Option<LoopDevice> {
    // Only attached loop devices are listed (they have a size): one read instead of opening
    // every /dev/loopN below `max loop devices`. It only names candidates; their status decides.
    let parts = std::fs::read_to_string("/proc/partitions").ok()?;
    let attached = parts.lines().filter_map(|l| l.split_whitespace().nth(3)?.strip_prefix("loop")?.parse().ok());
    attached.filter(|n: &u32| *n < max).find_map(|n| {
        let node = format!("/dev/loop{n}");
        let fd = sys.openat2(sys::AT_FDCWD, &node, libc::O_RDONLY, 0, RESOLVE_NO_SYMLINKS).ok()?;
        // Holding `fd` keeps the device from being autocleared while we mount it.
        let info = sys::loop_status(fd.as_fd()).ok()?;
        let same =
            (info.lo_device, info.lo_inode, info.lo_offset, info.lo_sizelimit) == (st.st_dev, st.st_ino, offset, size);
        (same && info.lo_flags & LOOP_FLAGS == LOOP_FLAGS).then_some(LoopDevice { _fd: fd, node })
    })
}
