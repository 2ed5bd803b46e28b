//! User-namespace mode: our own id maps, the squashfuse_ll daemon, and the supervising
//! parent. The daemon and the supervisor stay outside the container's mount namespace, so
//! pivot_root in the container cannot affect them, and the container cannot see them.

use crate::creds::clear_caps;
use crate::error::{path, sys as syserr, Result, StarterError};
use crate::image::Image;
use crate::sys::{self, Fork, Sys};
use caps::CapSet;
use starter::plan::Caller;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

/// Where the FUSE daemon may come from (root-owned system directories only).
const SQUASHFUSE: [&str; 3] = ["/usr/bin/squashfuse_ll", "/usr/local/bin/squashfuse_ll", "/usr/bin/squashfuse"];
/// Signals the supervisor passes on to the container.
const FORWARDED: [i32; 7] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

/// Enters a new user namespace mapping the caller to itself, or to root with `fakeroot`.
pub fn enter(caller: &Caller, fakeroot: bool) -> Result<()> {
    sys::unshare(libc::CLONE_NEWUSER).map_err(syserr("cannot create a user namespace"))?;
    let (u, g) = if fakeroot { (0, 0) } else { (caller.uid, caller.gid) };
    // "deny" must reach setgroups before gid_map is written, or the process could drop a
    // group whose purpose is to deny it access (CVE-2014-8989).
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{u} {} 1\n", caller.uid))?;
    write_proc("/proc/self/gid_map", &format!("{g} {} 1\n", caller.gid))
}

fn write_proc(p: &'static str, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|e| path("cannot write", p)(sys::Errno(e.raw_os_error().unwrap_or(libc::EIO))))
}

/// Mounts the image through FUSE (detached) and starts squashfuse_ll serving it. The FUSE
/// fd is mounted before the daemon starts (reading an unmounted /dev/fuse fails) and closed
/// here afterwards, so a dead daemon makes accesses fail instead of hang. `ids` own the mount.
pub fn mount_squashfuse(
    sys: &dyn Sys, image: &Image, ids: (u32, u32), drop_to: Option<&Caller>,
) -> Result<(OwnedFd, libc::pid_t)> {
    let fuse = sys
        .openat2(sys::AT_FDCWD, "/dev/fuse", libc::O_RDWR, 0, sys::RESOLVE_NO_SYMLINKS)
        .map_err(path("FUSE is unavailable: cannot open", "/dev/fuse"))?;
    let tree = crate::image::mount_fuse(sys, fuse.as_fd(), ids.0, ids.1, drop_to.is_some())?;
    Ok((tree, spawn_squashfuse(image, &fuse, drop_to)?))
}

/// Without FUSE the image is extracted, as the caller, to a new directory under /tmp, as
/// the reference does; the supervisor deletes it afterwards. Returns the directory and an
/// fd of the extracted root.
pub fn extract(sys: &dyn Sys, image: &Image) -> Result<(PathBuf, OwnedFd)> {
    eprintln!("WARNING: FUSE is unavailable: extracting {:?} to a temporary sandbox", image.shown);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = PathBuf::from(format!("/tmp/rootfs-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|_| StarterError::Refused("cannot create a directory in /tmp"))?;
    let root = dir.join("root").to_string_lossy().into_owned();
    let (offset, src) = (image.offset.to_string(), format!("/dev/fd/{}", image.fd.as_raw_fd()));
    let argv = ["/usr/bin/unsquashfs", "-q", "-n", "-no-xattrs", "-ig", "-no-exit", "-o", &offset, "-d", &root, &src]
        .map(String::from);
    let pid = match sys::fork().map_err(syserr("fork"))? {
        Fork::Parent(pid) => pid,
        Fork::Child => {
            let err = sys::clear_cloexec(image.fd.as_raw_fd()).err().unwrap_or_else(|| sys::execve(&argv, &[]));
            eprintln!("FATAL:   cannot run unsquashfs: {err}");
            std::process::exit(255)
        }
    };
    let status = loop {
        match sys::waitpid(pid) {
            Err(sys::Errno(libc::EINTR)) => {}
            r => break r.map_err(syserr("waitpid"))?,
        }
    };
    let fd = sys.openat2(sys::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0, sys::RESOLVE_NO_SYMLINKS);
    match fd {
        Ok(fd) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok((dir, fd)),
        _ => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(StarterError::Image { path: image.shown.clone(), why: "unsquashfs failed" })
        }
    }
}

/// With `drop_to` (setuid mode) the daemon is detached: it runs as the caller with no
/// privilege, is reparented to init, and exits when the mount goes away, so the container
/// process never sees an unexpected child.
fn spawn_squashfuse(image: &Image, fuse: &OwnedFd, drop_to: Option<&Caller>) -> Result<libc::pid_t> {
    let bin = SQUASHFUSE
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or(StarterError::Refused("squashfuse_ll is not installed"))?;
    let argv = [
        bin.to_string(),
        "-f".into(),
        "-o".into(),
        format!("offset={}", image.offset),
        format!("/dev/fd/{}", image.fd.as_raw_fd()),
        format!("/dev/fd/{}", fuse.as_raw_fd()),
    ];
    match sys::fork().map_err(syserr("fork"))? {
        Fork::Parent(pid) => {
            if drop_to.is_some() {
                while sys::waitpid(pid) == Err(sys::Errno(libc::EINTR)) {}
            }
            Ok(pid)
        }
        Fork::Child => {
            match drop_to {
                Some(c) => {
                    if !matches!(sys::fork(), Ok(Fork::Child)) {
                        std::process::exit(0)
                    }
                    let bounding = clear_caps(&[CapSet::Bounding, CapSet::Ambient]).is_ok();
                    let ids = sys::setgroups(&c.groups).and(sys::setresgid(c.gid)).and(sys::setresuid(c.uid)).is_ok();
                    let rest = clear_caps(&[CapSet::Effective, CapSet::Permitted, CapSet::Inheritable]).is_ok();
                    if !(bounding && ids && rest) || sys::getresuid() != (c.uid, c.uid, c.uid) {
                        std::process::exit(255)
                    }
                }
                None => drop(sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong)),
            }
            // Every other fd of ours is close-on-exec, so only 0-2 and these two reach it.
            let ok = sys::clear_cloexec(image.fd.as_raw_fd()).and(sys::clear_cloexec(fuse.as_raw_fd()));
            let err = ok.err().unwrap_or_else(|| sys::execve(&argv, &["PATH=/usr/bin:/bin".to_owned()]));
            eprintln!("FATAL:   cannot start {bin}: {err}");
            std::process::exit(255)
        }
    }
}

static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(sig: i32) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Waits for the container, forwarding signals; returns its exit code (128+n if killed by n).
pub fn supervise(child: libc::pid_t) -> Result<i32> {
    for s in FORWARDED {
        sys::catch_signal(s, note_signal);
    }
    loop {
        match sys::waitpid(child) {
            Ok(status) if libc::WIFEXITED(status) => return Ok(libc::WEXITSTATUS(status)),
            Ok(status) if libc::WIFSIGNALED(status) => return Ok(128 + libc::WTERMSIG(status)),
            Ok(_) => {}
            Err(sys::Errno(libc::EINTR)) => {}
            Err(e) => return Err(syserr("waitpid")(e)),
        }
        let sig = PENDING.swap(0, Ordering::SeqCst);
        if sig != 0 {
            sys::kill(child, sig);
        }
    }
}

/// Stops the FUSE daemon after the container is gone.
pub fn stop_daemon(pid: libc::pid_t) {
    sys::kill(pid, libc::SIGTERM);
    while sys::waitpid(pid) == Err(sys::Errno(libc::EINTR)) {}
}
