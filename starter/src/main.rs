//! The starter: the only privileged program. It reads one bounded Plan on fd 3, validates
//! it against the admin's apptainer.conf, builds the container's mount tree, drops every
//! privilege and execs the container process. `run` below is the whole sequence, in order;
//! docs/starter-sequence.md explains each step.

mod creds;
mod error;
mod image;
mod join;
mod ops;
mod overlay;
mod rootfs;
mod sys;
mod userns;

use conf::paths::CONF_FILE;
use creds::Root;
use error::{sys as syserr, Result, StarterError};
use nix::sched::{unshare, CloneFlags};
use nix::sys::{prctl, signal::Signal, stat};
use nix::unistd::{chdir, fchdir, setsid};
use starter::plan::{self, ImageKind, Policy, ValidatedPlan};
use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use sys::{Errno, Fork, LinuxSys, Sys, RESOLVE_NO_SYMLINKS};
use userns::{Handshake, IdMaps};

const PLAN_FD: i32 = 3;

fn main() {
    std::process::exit(run().unwrap_or_else(|e| fatal(e)))
}

/// The one line the user sees on failure, and the reference's exit code for it. A failed
/// write (stderr a file already at the caller's RLIMIT_FSIZE) must not become a panic.
fn fatal(e: StarterError) -> ! {
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("FATAL:   {e}\n"));
    std::process::exit(255)
}

fn run() -> Result<i32> {
    let secure = creds::sanitize()?;
    let bytes = sys::read_fd(PLAN_FD, plan::MAX_PLAN_BYTES + 1).map_err(syserr("reading the plan from fd 3"))?;
    sys::close_range_from(PLAN_FD as u32).map_err(syserr("close_range"))?;
    let plan = plan::decode(&bytes)?;
    let privileged = creds::privileged(secure, plan.namespaces.user);
    let users = creds::accounts(secure, conf::PASSWD_FILE);
    let caller = creds::caller(privileged, &users)?;
    let groups = creds::accounts(secure, conf::GROUP_FILE);
    // The setuid starter trusts only a root-owned, non-writable conf at the built-in path.
    let conf = if secure { (*conf::load_trusted(CONF_FILE)?).clone() } else { conf::load(CONF_FILE)? };
    let policy = Policy::resolved(&conf, &users, &groups);
    let plan = plan::validate(plan, &policy, &caller)?;
    let root = Root::new(IdMaps::new(&caller, &users, plan.fakeroot), caller, plan.caps());
    if let Some(pid) = plan.join {
        return join::run(root, &plan, pid);
    }
    // An instance outlives the frontend and its terminal.
    let _ = plan.instance && setsid().is_ok();
    root.as_caller()?;
    let image = image::open(&LinuxSys, &plan.image, &policy)?;
    (if privileged { run_setuid } else { run_userns })(root, &plan, &policy, image)
}

/// Kernel loop + squashfs in the initial user namespace (root's always, a user's as the conf
/// allows); no helper process unless a PID namespace needs a parent to reap it, or
/// fakeroot one to write the id maps as root.
fn run_setuid(mut root: Root, plan: &ValidatedPlan, policy: &Policy, image: image::Image) -> Result<i32> {
    let sys = &LinuxSys;
    let ops = ops::plan_ops(plan);
    let trees = ops::clone_sources(sys, &ops)?;
    root.as_root()?;
    // The image is mounted (detached) before the mount namespace exists, so a FUSE daemon
    // stays in the host's namespace and exits when the container's goes away.
    let kernel = root.caller.uid == 0 || policy.conf.may_kernel_mount_squashfs_setuid();
    let tree = match image.kind {
        ImageKind::Sandbox => image::mount_sandbox(sys, &image, plan.image.writable)?,
        _ if kernel => image::mount_kernel(sys, &image, policy)?,
        // The kernel may not parse this image: FUSE, as in user-namespace mode.
        _ => userns::mount_squashfuse(sys, &image, (root.caller.uid, root.caller.gid), Some(&root.caller))?.0,
    };
    drop(image);
    unshare(CloneFlags::CLONE_NEWNS | ns_flags(plan)).map_err(syserr("cannot create namespaces"))?;
    // The host's procfs, opened before any mount of ours: after the container's pivot_root
    // the parent's /proc would be the container's.
    let proc = || sys.openat2(sys::AT_FDCWD, "/proc", libc::O_PATH, 0, RESOLVE_NO_SYMLINKS);
    let fakeroot = if plan.fakeroot { Some((Handshake::new()?, proc())) } else { None };
    // A new procfs shows the PID namespace of its mounter, so with one the container's
    // first process builds the root; the parent only maps ids, drops everything and reaps.
    if plan.namespaces.pid || plan.fakeroot {
        if let Fork::Parent { child } = sys::fork().map_err(syserr("fork"))? {
            drop((trees, tree));
            if let Some((handshake, proc)) = fakeroot {
                let proc = proc.map_err(syserr("cannot open /proc"))?;
                handshake
                    .parent(child, || userns::write_maps(sys, proc.as_raw_fd(), &child.to_string(), &root.maps))?;
            }
            creds::drop_all(root.into_supervisor())?;
            sys::close_range_from(3).map_err(syserr("close_range"))?;
            return userns::supervise(child, false);
        }
        let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    }
    rootfs::build(sys, &root, plan, policy, (tree, Vec::new()), &ops, trees)?;
    // Fakeroot: a user namespace of our own after the root is built as real root, so the
    // container's root owns no mount and its capabilities stop at this namespace.
    if let Some((handshake, proc)) = fakeroot {
        drop(proc);
        handshake.child()?;
        root.entered_userns();
    }
    finish(root, plan).map(|never| match never {})
}

/// Everything inside a user namespace. The parent keeps its own mount namespace (the image
/// mount and the FUSE daemon live there), forwards signals and reaps; the container gets a
/// second mount namespace for its pivot_root.
fn run_userns(root: Root, plan: &ValidatedPlan, policy: &Policy, mut image: image::Image) -> Result<i32> {
    let sys = &LinuxSys;
    if let Some(child) = userns::enter(&root.maps, &policy.conf.binary_path)? {
        return userns::supervise(child, false);
    }
    creds::no_new_privs()?;
    if image.kind == ImageKind::Sandbox {
        // Only mounts of our own namespace can be cloned, and the fd points into the host's:
        // the cwd is carried over into the new namespace, so clone from there.
        fchdir(image.fd.as_raw_fd()).map_err(syserr("cannot enter the sandbox"))?;
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(syserr("cannot create a mount namespace"))?;
    if image.kind == ImageKind::Sandbox {
        image.fd = sys
            .openat2(sys::AT_FDCWD, ".", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .map_err(syserr("cannot open the sandbox"))?;
    }
    // Overlays first: a refused layer stops us before the image's FUSE daemon starts.
    let mut layers = overlay::mount_all(sys, plan, &image, root.maps.target)?;
    let mounts = std::mem::take(&mut layers.mounts);
    let (tree, daemon) = match image.kind {
        ImageKind::Sandbox => (image::mount_sandbox(sys, &image, plan.image.writable)?, None),
        _ => userns::mount_squashfuse(sys, &image, root.maps.target, None).map(|(t, pid)| (t, Some(pid)))?,
    };
    drop(image);
    unshare(ns_flags(plan)).map_err(syserr("cannot create namespaces"))?;
    let Fork::Parent { child } = sys::fork().map_err(syserr("fork"))? else {
        let _ = prctl::set_pdeathsig(Signal::SIGKILL);
        let Err(err) = container_userns(root, plan, policy, tree, mounts);
        fatal(err)
    };
    drop((tree, mounts));
    let code = userns::supervise(child, false);
    daemon.into_iter().for_each(userns::stop_daemon);
    overlay::finish(layers);
    code
}

fn container_userns(
    root: Root, plan: &ValidatedPlan, policy: &Policy, tree: OwnedFd, layers: Vec<overlay::Layer>,
) -> Result<Infallible> {
    let sys = &LinuxSys;
    // pivot_root changes the root of every process in the mount namespace; the supervisor
    // and the FUSE daemon must keep theirs.
    unshare(CloneFlags::CLONE_NEWNS).map_err(syserr("cannot create a mount namespace"))?;
    let ops = ops::plan_ops(plan);
    let trees = ops::clone_sources(sys, &ops)?;
    rootfs::build(sys, &root, plan, policy, (tree, layers), &ops, trees)?;
    finish(root, plan)
}

/// The last steps: the privilege drop, then as the container user no fds but 0-2,
/// seccomp, cwd, exec.
fn finish(root: Root, plan: &ValidatedPlan) -> Result<Infallible> {
    let user = creds::drop_all(root)?;
    sys::close_range_from(3).map_err(syserr("close_range"))?;
    user.confine()?;
    let (cwd, argv) = (plan.cwd().as_str(), &plan.process.argv);
    chdir(cwd).map_err(error::path("cannot change directory to", cwd))?;
    if plan.instance || (plan.namespaces.pid && plan.init) {
        // Already unprivileged and confined: from here on, PID 1 only reaps and forwards.
        if let Fork::Parent { child } = sys::fork().map_err(syserr("fork"))? {
            let code = if plan.instance { join::linger() } else { userns::supervise(child, true).unwrap_or(255) };
            std::process::exit(code);
        }
    }
    let _ = plan.process.umask.map(|m| stat::umask(stat::Mode::from_bits_truncate(m)));
    Err(exec(argv, &plan.process.env))
}

/// execve as `execvp` does it, of absolute paths only: a bare name is searched in the
/// absolute directories of the container's PATH (a directory where it is missing or not
/// ours to run is skipped, any other failure ends the search; the frontend lets the shell
/// handle a PATH with relative ones), and a file without a `#!` line (ENOEXEC) is run by
/// /bin/sh, as the image's shell did.
fn exec(argv: &[String], env: &[String]) -> StarterError {
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/bin:/bin");
    let absolute = path.split(':').filter(|d| d.starts_with('/')).map(Some);
    let dirs: Vec<_> = if argv[0].starts_with('/') { vec![None] } else { absolute.collect() };
    for dir in dirs {
        let file = dir.map_or(argv[0].clone(), |d| format!("{d}/{}", argv[0]));
        let mut e = sys::execve(Some(&file), argv, env);
        if e == Errno::ENOEXEC {
            e = sys::execve(None, &[&["/bin/sh".to_string(), file.clone()][..], &argv[1..]].concat(), env);
        }
        if dir.is_none() || ![Errno::ENOENT, Errno::ENOTDIR, Errno::EACCES].contains(&e) {
            return error::path("cannot execute", &file)(e);
        }
    }
    StarterError::NotInPath(argv[0].clone())
}

fn ns_flags(plan: &ValidatedPlan) -> CloneFlags {
    use libc::{CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUTS};
    let ns = plan.namespaces;
    let flags = [(ns.pid, CLONE_NEWPID), (ns.ipc, CLONE_NEWIPC), (ns.uts, CLONE_NEWUTS), (ns.net, CLONE_NEWNET)];
    CloneFlags::from_bits_retain(flags.into_iter().filter(|f| f.0).fold(0, |all, f| all | f.1))
}
