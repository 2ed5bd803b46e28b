//! The closed set of mount operations inside the container root, planned from a
//! `ValidatedPlan` by a pure function and executed over `Sys`. Invariants: every mount gets
//! at least NOSUID (and NODEV except the planner's own device binds); destinations are
//! opened with `RESOLVE_IN_ROOT` so a symlink in the image cannot lead outside the root;
//! kernel filesystems (/proc, /sys, /dev) must be real directories (`RESOLVE_NO_SYMLINKS`).

use crate::error::{path, Result};
use crate::sys::{
    self, Errno, Sys, SysResult, AT_FDCWD, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use starter::plan::{ContainerPath, Mount, ValidatedPlan};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Device nodes bound from the host into a minimal /dev.
const MINIMAL_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

#[derive(Debug, Clone, PartialEq)]
pub enum NewFs {
    Tmpfs { size_mib: u32, mode: u32 },
    Proc,
    Devpts,
}

/// One step of building the container's mount tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A fresh filesystem instance.
    NewFs { fs: NewFs, dst: ContainerPath },
    /// Recursive bind of a host path, cloned as the caller. `devices` is set only by the
    /// planner for /dev, never from the Plan.
    BindHost { src: PathBuf, dst: ContainerPath, read_only: bool, devices: bool },
    /// A generated file, written to the session tmpfs and bound read-only.
    File { dst: ContainerPath, contents: String },
    /// A symlink created in a directory the starter just mounted (e.g. /dev/ptmx).
    Symlink { target: &'static str, dst: ContainerPath },
}

fn cp(s: &str) -> ContainerPath {
    ContainerPath::parse(s).expect("static container path")
}

/// Turns the validated mounts into operations. Pure: no syscalls, unit-tested.
pub fn plan_ops(plan: &ValidatedPlan) -> Vec<Op> {
    let new_fs = |fs, dst: &str| Op::NewFs { fs, dst: cp(dst) };
    let minimal_dev = plan.mounts().contains(&Mount::Dev { minimal: true });
    let ops = plan.mounts().iter().map(|m| match m {
        // A new procfs needs a PID namespace we own; otherwise bind the host's, recursively
        // so masked submounts stay masked.
        Mount::Proc if plan.namespaces.pid => vec![new_fs(NewFs::Proc, "/proc")],
        Mount::Proc => vec![host_bind("/proc", false, false)],
        Mount::Sys => vec![host_bind("/sys", true, false)],
        Mount::Dev { minimal: false } => vec![host_bind("/dev", false, true)],
        Mount::Dev { minimal: true } => std::iter::once(new_fs(NewFs::Tmpfs { size_mib: 1, mode: 0o755 }, "/dev"))
            .chain(MINIMAL_DEVICES.map(|d| host_bind(&format!("/dev/{d}"), false, true)))
            .chain([new_fs(NewFs::Tmpfs { size_mib: 64, mode: 0o1777 }, "/dev/shm")])
            .collect(),
        Mount::Devpts => std::iter::once(new_fs(NewFs::Devpts, "/dev/pts"))
            .chain(minimal_dev.then(|| Op::Symlink { target: "pts/ptmx", dst: cp("/dev/ptmx") }))
            .collect(),
        Mount::Tmpfs { dst, size_mib } => {
            vec![Op::NewFs { fs: NewFs::Tmpfs { size_mib: *size_mib, mode: 0o1777 }, dst: dst.clone() }]
        }
        Mount::Bind { src, dst, read_only, .. } => {
            vec![Op::BindHost { src: src.clone(), dst: dst.clone(), read_only: *read_only, devices: false }]
        }
        Mount::File { dst, contents } => vec![Op::File { dst: dst.clone(), contents: contents.clone() }],
        Mount::GpuDevice { name } => vec![host_bind(&format!("/dev/{name}"), false, true)],
    });
    ops.flatten().collect()
}

/// The host's own `p` at the same place in the container.
fn host_bind(p: &str, read_only: bool, devices: bool) -> Op {
    Op::BindHost { src: p.into(), dst: cp(p), read_only, devices }
}

/// Clones every host bind source as the caller (fsuid or user namespace), before any
/// container mount exists, so a later mount cannot change what a source path means.
pub fn clone_sources(sys: &dyn Sys, ops: &[Op]) -> Result<Vec<Option<OwnedFd>>> {
    ops.iter()
        .map(|op| match op {
            Op::BindHost { src, read_only, devices, .. } => {
                let s = src.to_str().ok_or(crate::error::StarterError::Refused("bind source is not UTF-8"))?;
                let nodev = if *devices { 0 } else { MOUNT_ATTR_NODEV };
                let set = nodev | if *read_only { MOUNT_ATTR_RDONLY } else { 0 };
                clone_tree(sys, AT_FDCWD, s, true, set).map(Some).map_err(path("cannot bind", s))
            }
            _ => Ok(None),
        })
        .collect()
}

/// A detached clone of the mount tree at `p` under `dir`, always NOSUID, plus `set`. A clone
/// of a shared mount is a peer of it: the setuid starter clones in the host's namespace, so
/// without MS_SLAVE a bind placed inside this one would appear on the host, and stay.
pub fn clone_tree(sys: &dyn Sys, dir: RawFd, p: &str, recursive: bool, set: u64) -> SysResult<OwnedFd> {
    let tree = sys.open_tree(dir, p, recursive)?;
    sys.mount_setattr(tree.as_fd(), MOUNT_ATTR_NOSUID | set, libc::MS_SLAVE, recursive).map(|()| tree)
}

/// Executes `ops` under the container root `root`; `session` is the starter's private tmpfs
/// for generated files; `trees` comes from `clone_sources`.
pub fn apply(
    sys: &dyn Sys, root: BorrowedFd<'_>, session: BorrowedFd<'_>, ops: &[Op], trees: Vec<Option<OwnedFd>>,
) -> Result<()> {
    for (i, (op, tree)) in ops.iter().zip(trees).enumerate() {
        match op {
            Op::NewFs { fs, dst } => {
                let mnt = new_fs(sys, fs).map_err(path("cannot mount on", dst.as_str()))?;
                let at = mountpoint(sys, root, dst, true, true, &[])?;
                sys.move_mount(mnt.as_fd(), at.as_fd()).map_err(path("cannot mount on", dst.as_str()))?;
            }
            Op::BindHost { dst, devices, .. } => {
                let tree = tree.expect("clone_sources cloned every bind");
                // The kernel filesystems must land on real directories, never via a symlink.
                let strict = *devices || ["/proc", "/sys"].contains(&dst.as_str());
                let at = mountpoint(sys, root, dst, dir_mode(&tree).is_some(), strict, &[])?;
                sys.move_mount(tree.as_fd(), at.as_fd()).map_err(path("cannot bind onto", dst.as_str()))?;
            }
            Op::File { dst, contents } => bind_file(sys, root, session, i, dst, contents)?,
            Op::Symlink { target, dst } => {
                let parent = mountpoint(sys, root, &cp("/dev"), true, true, &[])?;
                let name = dst.as_str().rsplit('/').next().unwrap_or_default();
                sys.symlinkat(target, parent.as_fd(), name).map_err(path("cannot create", dst.as_str()))?;
            }
        }
    }
    Ok(())
}

fn new_fs(sys: &dyn Sys, fs: &NewFs) -> SysResult<OwnedFd> {
    match fs {
        NewFs::Tmpfs { size_mib, mode } => {
            let (size, mode) = (format!("{size_mib}m"), format!("{mode:o}"));
            new_mount(sys, "tmpfs", &[("size", &size), ("mode", &mode)], MOUNT_ATTR_NODEV)
        }
        NewFs::Proc => new_mount(sys, "proc", &[], MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC),
        // A new instance, so the container's ptys are its own; no gid=tty (unmapped in userns).
        NewFs::Devpts => {
            new_mount(sys, "devpts", &[("newinstance", ""), ("ptmxmode", "0666"), ("mode", "0620")], MOUNT_ATTR_NODEV)
        }
    }
}

/// Every new filesystem of the starter: a detached mount of `fstype` configured with `opts`
/// (an empty value sets a flag), always NOSUID, plus `attrs`.
pub fn new_mount(sys: &dyn Sys, fstype: &str, opts: &[(&str, &str)], attrs: u64) -> SysResult<OwnedFd> {
    let ctx = sys.fsopen(fstype)?;
    for (k, v) in opts {
        sys.fsconfig(ctx.as_fd(), k, v)?;
    }
    sys.fsconfig(ctx.as_fd(), "", "")?;
    sys.fsmount(ctx.as_fd(), MOUNT_ATTR_NOSUID | attrs)
}

fn bind_file(
    sys: &dyn Sys, root: BorrowedFd<'_>, session: BorrowedFd<'_>, i: usize, dst: &ContainerPath, contents: &str,
) -> Result<()> {
    let name = format!("file{i}");
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
    let f = sys
        .openat2(session.as_raw_fd(), &name, flags, 0o644, sys::RESOLVE_NO_SYMLINKS)
        .map_err(path("cannot write", dst.as_str()))?;
    sys.write(f.as_fd(), contents.as_bytes()).map_err(path("cannot write", dst.as_str()))?;
    let tree = clone_tree(sys, session.as_raw_fd(), &name, false, MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY)
        .map_err(path("cannot bind", dst.as_str()))?;
    let at = mountpoint(sys, root, dst, false, false, &[])?;
    sys.move_mount(tree.as_fd(), at.as_fd()).map_err(path("cannot bind onto", dst.as_str()))
}

/// Where an op mounts, and whether the mount point is a directory.
pub fn destination<'a>(op: &'a Op, tree: Option<&OwnedFd>) -> Option<(&'a ContainerPath, bool)> {
    match op {
        Op::NewFs { dst, .. } => Some((dst, true)),
        Op::BindHost { dst, .. } => Some((dst, tree.is_none_or(|t| dir_mode(t).is_some()))),
        Op::File { dst, .. } => Some((dst, false)),
        Op::Symlink { .. } => None,
    }
}

/// Creates in the `stubs` layer the part of `dst` missing from the read-only image, so the
/// overlay of stubs over the image has every mount point. Directories that exist in the
/// image are mirrored with their mode so the merged view keeps it. A symlink or file on the
/// way stops stubbing: `mountpoint` then resolves it inside the root, or reports it.
/// Returns whether anything was created.
pub fn stub(
    sys: &dyn Sys, image: BorrowedFd<'_>, stubs: BorrowedFd<'_>, dst: &ContainerPath, dir: bool,
) -> Result<bool> {
    let parts: Vec<&str> = dst.relative().split('/').collect();
    let resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS;
    let mut modes = Vec::new();
    for n in 1..=parts.len() {
        match sys.openat2(image.as_raw_fd(), &parts[..n].join("/"), libc::O_PATH | libc::O_NOFOLLOW, 0, resolve) {
            Ok(fd) => modes.push(dir_mode(&fd)),
            Err(Errno::ENOENT) => break,
            Err(_) => return Ok(false),
        }
    }
    if modes.len() == parts.len() || modes.contains(&None) {
        return Ok(false);
    }
    mountpoint(sys, stubs, dst, dir, true, &modes).map(|_| true)
}

/// Opens `dst` inside `root` (O_PATH), creating it and missing parents as directories (or
/// the last one as an empty file), component n with `modes[n]` (0755 if not given).
/// `strict` refuses any symlink on the way.
pub fn mountpoint(
    sys: &dyn Sys, root: BorrowedFd<'_>, dst: &ContainerPath, dir: bool, strict: bool, modes: &[Option<u32>],
) -> Result<OwnedFd> {
    let no_symlinks = if strict { sys::RESOLVE_NO_SYMLINKS } else { 0 };
    let resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS | no_symlinks;
    let open = |rel: &str| sys.openat2(root.as_raw_fd(), rel, libc::O_PATH, 0, resolve);
    let parts: Vec<&str> = dst.relative().split('/').collect();
    let mode = |i: usize| modes.get(i).copied().flatten().unwrap_or(0o755);
    for n in 1..=parts.len() {
        if let Err(Errno::ENOENT) = open(&parts[..n].join("/")) {
            open(&format!("./{}", parts[..n - 1].join("/")))
                .and_then(|p| create(sys, p.as_fd(), parts[n - 1], dir || n < parts.len(), mode(n - 1)))
                .map_err(path("cannot create mount point", dst.as_str()))?;
        }
    }
    open(dst.relative()).map_err(path("cannot open mount point", dst.as_str()))
}

/// The permission bits of `fd` if it is a directory.
fn dir_mode(fd: &OwnedFd) -> Option<u32> {
    nix::sys::stat::fstat(fd.as_raw_fd())
        .ok()
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map(|st| st.st_mode & 0o7777)
}

/// Creates a directory or an empty file `name` under `parent`; an existing one is fine.
pub fn create(sys: &dyn Sys, parent: BorrowedFd<'_>, name: &str, dir: bool, mode: u32) -> SysResult<()> {
    let made = if dir {
        sys.mkdirat(parent, name, mode)
    } else {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        sys.openat2(parent.as_raw_fd(), name, flags, 0o644, sys::RESOLVE_NO_SYMLINKS).map(drop)
    };
    made.or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
}

#[cfg(test)]
mod tests;
