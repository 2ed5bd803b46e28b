//! Assembles the container root in the starter's private mount namespace and pivots into
//! it. The only host path named is /tmp, covered by the starter's own session tmpfs (the
//! host's /tmp is untouched: every mount here is a slave of the host, never shared back).

use crate::creds::Root;
use crate::error::{path, sys as syserr, Result};
use crate::ops::{self, Op};
use crate::overlay::Layer;
use crate::sys::{self, Sys, AT_FDCWD, MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY, RESOLVE_NO_SYMLINKS};
use nix::fcntl::AtFlags;
use nix::mount::{umount2, MntFlags};
use nix::unistd::{chdir, fchdir, fchownat, pivot_root, sethostname, Gid, Uid};
use starter::plan::{Policy, ValidatedPlan};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

const SESSION: &str = "/tmp";

/// Builds the root from `image` and the `--overlay` layers (detached mounts) and the
/// planned ops, then pivots.
pub fn build(
    sys: &dyn Sys, root: &Root, plan: &ValidatedPlan, policy: &Policy, (image, layers): (OwnedFd, Vec<Layer>),
    ops: &[Op], trees: Vec<Option<OwnedFd>>,
) -> Result<()> {
    let writable = plan.writable_tmpfs || plan.image.writable || layers.iter().any(|l| l.writable);
    let slash = sys.openat2(AT_FDCWD, "/", libc::O_PATH, 0, 0).map_err(syserr("cannot open /"))?;
    // Nothing mounted from here on may propagate to the host.
    sys.mount_setattr(slash.as_fd(), 0, libc::MS_SLAVE, true).map_err(syserr("cannot make mounts private"))?;
    let session = mount_session(sys, policy)?;
    let top = if !layers.is_empty() || policy.conf.enable_overlay.allows_kernel_overlay() && !plan.image.writable {
        let lower = subdir(sys, session.as_fd(), "lower")?;
        sys.move_mount(image.as_fd(), lower.as_fd()).map_err(syserr("cannot mount image"))?;
        let lower = open_dir(sys, session.as_raw_fd(), "lower").map_err(syserr("cannot open image root"))?;
        let stubs = subdir(sys, session.as_fd(), "stubs")?;
        let mut stubbed = false;
        for (op, tree) in ops.iter().zip(&trees) {
            if let Some((dst, dir)) = ops::destination(op, tree.as_ref()) {
                stubbed |= ops::stub(sys, lower.as_fd(), stubs.as_fd(), dst, dir)?;
            }
        }
        match (stubbed, plan.writable_tmpfs || !layers.is_empty()) {
            // The image mount itself, detached again, when no overlay is needed.
            (false, false) => sys.open_tree(lower.as_raw_fd(), "", true).map_err(syserr("cannot clone image mount"))?,
            _ => mount_overlay(sys, root, session.as_fd(), plan.writable_tmpfs, layers, policy)?,
        }
    } else {
        image
    };
    let at = subdir(sys, session.as_fd(), "root")?;
    sys.move_mount(top.as_fd(), at.as_fd()).map_err(syserr("cannot mount container root"))?;
    let croot = open_dir(sys, session.as_raw_fd(), "root").map_err(syserr("cannot open container root"))?;
    ops::apply(sys, croot.as_fd(), session.as_fd(), ops, trees)?;
    if !writable {
        // Only the root mount itself: binds below keep their own read-only setting.
        sys.mount_setattr(croot.as_fd(), MOUNT_ATTR_RDONLY, 0, false)
            .map_err(syserr("cannot make the root read-only"))?;
    }
    plan.hostname.as_ref().map_or(Ok(()), sethostname).map_err(syserr("sethostname"))?;
    fchdir(croot.as_raw_fd()).map_err(syserr("cannot enter container root"))?;
    // pivot_root(".", ".") then detaching the old root stacked on top: no path of the host
    // is named, and the old root leaves this mount namespace entirely.
    let detach = || umount2(".", MntFlags::MNT_DETACH).and_then(|()| chdir("/"));
    pivot_root(".", ".").and_then(|()| detach()).map_err(syserr("pivot_root"))
}

fn mount_session(sys: &dyn Sys, policy: &Policy) -> Result<OwnedFd> {
    let size = format!("{}m", policy.conf.sessiondir_max_size);
    let mnt = ops::new_mount(sys, "tmpfs", &[("size", &size), ("mode", "700")], MOUNT_ATTR_NODEV)
        .map_err(syserr("cannot mount session tmpfs"))?;
    let at = open_dir(sys, AT_FDCWD, SESSION).map_err(path("cannot open", SESSION))?;
    sys.move_mount(mnt.as_fd(), at.as_fd()).map_err(path("cannot mount session on", SESSION))?;
    open_dir(sys, AT_FDCWD, SESSION).map_err(path("cannot open", SESSION))
}

fn subdir(sys: &dyn Sys, session: BorrowedFd<'_>, name: &str) -> Result<OwnedFd> {
    ops::create(sys, session, name, true, 0o755).map_err(path("cannot create session directory", name))?;
    open_dir(sys, session.as_raw_fd(), name).map_err(path("cannot open session directory", name))
}

/// Opens the directory `name` under `dir` (O_PATH, no symlinks).
fn open_dir(sys: &dyn Sys, dir: RawFd, name: &str) -> std::result::Result<OwnedFd, sys::Errno> {
    sys.openat2(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS)
}

/// Overlay of the image with a tmpfs upper layer: missing mount points can be created, and
/// `--writable-tmpfs` writes land in the session tmpfs.
fn mount_overlay(
    sys: &dyn Sys, root: &Root, session: BorrowedFd<'_>, writable: bool, layers: Vec<Layer>, policy: &Policy,
) -> Result<OwnedFd> {
    // Layer paths are resolved relative to the cwd: our session tmpfs, which only this
    // process can reach. The stub layer (mount points missing in the image) lies on top,
    // then the `--overlay` layers (their `upper` if they have one), then the image.
    fchdir(session.as_raw_fd()).map_err(syserr("cannot enter session"))?;
    let kernel = policy.conf.enable_overlay.allows_kernel_overlay() && !layers.iter().any(|l| l.writable && l.fuse);
    let (mut lower, mut upper, fuse_ok) = (String::from("stubs"), None, !layers.is_empty());
    for (i, layer) in layers.into_iter().enumerate() {
        let (name, up) = (format!("o{i}"), format!("o{i}/upper"));
        sys.move_mount(layer.tree.as_fd(), subdir(sys, session, &name)?.as_fd())
            .map_err(path("cannot mount", &name))?;
        if layer.writable {
            subdir(sys, session, &up)?;
            upper = Some((subdir(sys, session, &format!("{name}/work")).map(|_| up)?, format!("{name}/work")));
        } else {
            lower = format!("{lower}:{}", if open_dir(sys, session.as_raw_fd(), &up).is_ok() { up } else { name });
        }
    }
    lower.push_str(":lower");
    let mut opts = vec![("lowerdir", lower.as_str())];
    opts.extend(upper.iter().flat_map(|(u, w)| [("upperdir", u.as_str()), ("workdir", w.as_str())]));
    if writable {
        // The setuid starter's fakeroot: the container's root is the caller, so the caller
        // must own the writable layer (root-owned, it would be unmapped in the namespace).
        let owner = (root.caller.setuid && root.maps.target == (0, 0)).then_some(&root.caller);
        for name in ["upper", "work"] {
            let dir = subdir(sys, session, name)?;
            if let Some(c) = owner {
                let (u, g) = (Some(Uid::from_raw(c.uid)), Some(Gid::from_raw(c.gid)));
                fchownat(Some(dir.as_raw_fd()), "", u, g, AtFlags::AT_EMPTY_PATH)
                    .map_err(path("cannot chown session directory", name))?;
            }
        }
        opts.extend([("upperdir", "upper"), ("workdir", "work")]);
    }
    opts.extend((!root.caller.setuid).then_some(("userxattr", "")));
    // The kernel takes no upper layer on FUSE (fuse2fs), `driver` no kernel overlay at all.
    match kernel.then(|| ops::new_mount(sys, "overlay", &opts, MOUNT_ATTR_NODEV)) {
        None | Some(Err(_)) if fuse_ok => crate::overlay::mount_fuse_overlayfs(sys, &opts, root.maps.target),
        r => r.unwrap_or(Err(sys::Errno::EPERM)).map_err(syserr("cannot mount overlay")),
    }
}
