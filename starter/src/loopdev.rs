//! Kernel loop devices for the setuid starter: read-only, autoclear, offset and size taken
//! from the image header the starter read itself. With `shared loop devices = yes` an
//! existing device already backing the same file region read-only is reused, so parallel
//! containers of one image share the kernel's page cache and decompressed pages.

use crate::error::{path, sys as syserr, Result, StarterError};
use crate::image::Image;
use crate::sys::{self, Errno, Sys, LOOP_FLAGS, RESOLVE_NO_SYMLINKS};
use starter::plan::{ensure, Policy};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// An attached loop device: the open fd (keeps it from being autocleared until mounted)
/// and its node path for the `source` option of the filesystem context.
pub struct LoopDevice {
    pub _fd: OwnedFd,
    pub node: String,
}

const ATTEMPTS: u32 = 16;

/// Attaches the image's squashfs region (or reuses a shared device), below `max loop devices`.
pub fn attach(sys: &dyn Sys, image: &Image, policy: &Policy) -> Result<LoopDevice> {
    let (offset, size, file) = (image.offset, image.size, image.fd.as_fd());
    let max = u32::try_from(policy.conf.max_loop_devices).unwrap_or(u32::MAX);
    let st = nix::sys::stat::fstat(file.as_raw_fd()).map_err(syserr("cannot stat image"))?;
    if let Some(dev) = policy.conf.shared_loop_devices.then(|| find_shared(sys, &st, offset, size, max)).flatten() {
        return Ok(dev);
    }
    let open = |node: &str, flags| {
        sys.openat2(sys::AT_FDCWD, node, flags, 0, RESOLVE_NO_SYMLINKS).map_err(path("cannot open", node))
    };
    let ctl = open("/dev/loop-control", libc::O_RDWR)?;
    for _ in 0..ATTEMPTS {
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
