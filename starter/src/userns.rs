//! User namespaces and user-namespace mode: id maps (written by us, by newuidmap, or by
//! the setuid parent), the apptainer-squashfuse daemon, and the supervising parent. The daemon and
//! the supervisor stay outside the container's mount namespace, so pivot_root in the
//! container cannot affect them, and the container cannot see them.

use crate::error::{path, sys as syserr, Result, StarterError};
use crate::image::Image;
use crate::sys::{self, Fork, LinuxSys, Pid, Sys};
use conf::{Accounts, SubIdRange};
use nix::fcntl::{fcntl, FcntlArg::F_SETFD, FdFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::{prctl, signal::Signal};
use starter::plan::Caller;
use std::io::{stderr, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

/// The FUSE daemon, installed beside the starter (it hands compressors it does not decode to squashfuse_ll).
const SQUASHFUSE: &str = "bin/apptainer-squashfuse";
/// Signals the supervisor passes on to the container; the first four stop an instance.
pub const FORWARDED: [i32; 7] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

/// The id maps of a user namespace, from the caller's real ids and the admin's /etc/subuid
/// and /etc/subgid (root-owned ones in setuid mode), never from the Plan.
pub struct IdMaps {
    /// Container root with `fakeroot`, else the caller's own ids.
    pub fakeroot: bool,
    caller: (u32, u32),
    /// The ids the container process gets, in its namespace's terms.
    pub target: (u32, u32),
    /// The caller's subordinate uid and gid ranges, mapped from 1 up (fakeroot only).
    pub ranges: Option<(SubIdRange, SubIdRange)>,
}

impl IdMaps {
    /// The caller's name, which selects its /etc/subuid lines, comes from our own lookup of
    /// the real uid in the host's passwd file.
    pub fn new(caller: &Caller, users: &Accounts, fakeroot: bool) -> IdMaps {
        let name = users.by_id(caller.uid).map(|a| a.name.as_str());
        let load = if caller.setuid { conf::load_subids_trusted } else { conf::load_subids };
        let lookup = |file| load(file).ok().and_then(|ids| ids.lookup(name, caller.uid).ok());
        let ranges = if fakeroot { lookup(conf::SUBUID_FILE).zip(lookup(conf::SUBGID_FILE)) } else { None };
        let ids = (caller.uid, caller.gid);
        IdMaps { fakeroot, caller: ids, target: if fakeroot { (0, 0) } else { ids }, ranges }
    }
    /// `inside outside count` lines of the uid (`gid` false) or gid map.
    fn lines(&self, gid: bool) -> Vec<[u32; 3]> {
        let pick = |(u, g): (u32, u32)| if gid { g } else { u };
        let range = self.ranges.map(|(u, g)| if gid { g } else { u }).map(|r| [1, r.start, r.count]);
        std::iter::once([pick(self.target), pick(self.caller), 1]).chain(range).collect()
    }
}

/// Enters a new user namespace with `maps`. Without subordinate ranges the process writes
/// its one-line maps itself. With ranges only root-owned newuidmap/newgidmap may write them,
/// and only for another process: we fork, the child enters the namespace and goes on, and
/// the parent maps it and then supervises it (its pid is returned).
pub fn enter(maps: &IdMaps, binary_path: &str) -> Result<Option<Pid>> {
    if maps.ranges.is_none() {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(syserr("cannot create a user namespace"))?;
        return write_maps(&LinuxSys, sys::AT_FDCWD, "/proc/self", maps).map(|()| None);
    }
    let handshake = Handshake::new()?;
    let Fork::Parent { child } = sys::fork().map_err(syserr("fork"))? else {
        let _ = prctl::set_pdeathsig(Signal::SIGKILL);
        return handshake.child().map(|()| None);
    };
    let map = |tool, gid| newidmap(tool, binary_path, child, &maps.lines(gid));
    handshake.parent(child, || map("newuidmap", false).and_then(|()| map("newgidmap", true)))?;
    Ok(Some(child))
}

/// Writes the maps of the process whose /proc directory is `dir`/`pid`. "deny" must reach
/// setgroups before gid_map is written, or the process could drop a group whose purpose is
/// to deny it access (CVE-2014-8989); only with a real subgid range may it stay allowed.
pub fn write_maps(sys: &dyn Sys, dir: RawFd, pid: &str, maps: &IdMaps) -> Result<()> {
    let text = |gid| maps.lines(gid).iter().map(|[i, o, n]| format!("{i} {o} {n}\n")).collect::<String>();
    let files = [("setgroups", "deny".to_owned()), ("uid_map", text(false)), ("gid_map", text(true))];
    for (name, content) in files.iter().skip(maps.ranges.is_some() as usize) {
        let p = format!("{pid}/{name}");
        let f = sys.openat2(dir, &p, libc::O_WRONLY, 0, sys::RESOLVE_NO_MAGICLINKS).map_err(path("cannot open", &p))?;
        sys.write(f.as_fd(), content.as_bytes()).map_err(path("cannot write", &p))?;
    }
    Ok(())
}

/// Runs the root-owned `tool` (from `binary path`, else /usr/bin) with an empty
/// environment and fixed arguments: `pid` then the map lines.
fn newidmap(tool: &'static str, binary_path: &str, pid: Pid, lines: &[[u32; 3]]) -> Result<()> {
    let trusted =
        |p: &PathBuf| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o022 == 0);
    let dirs = binary_path.split(':').filter(|d| d.starts_with('/')).chain(["/usr/bin"]);
    let bin = dirs.map(|d| Path::new(d).join(tool)).find(trusted);
    let bin = bin.ok_or(StarterError::Helper(tool, "is not installed root-owned"))?;
    let args = std::iter::once(pid.to_string()).chain(lines.iter().flatten().map(u32::to_string));
    let ok = Command::new(bin).args(args).env_clear().stdin(Stdio::null()).status().is_ok_and(|s| s.success());
    ok.then_some(()).ok_or(StarterError::Helper(tool, "failed"))
}

/// Two pipes between a process entering a user namespace and the parent that maps it.
pub struct Handshake {
    ready: (PipeReader, PipeWriter),
    go: (PipeReader, PipeWriter),
}

impl Handshake {
    pub fn new() -> Result<Handshake> {
        let pipe = || std::io::pipe().map_err(|_| StarterError::Refused("cannot create a pipe"));
        Ok(Handshake { ready: pipe()?, go: pipe()? })
    }
    /// In the child: enter the namespace, tell the parent, wait until it has mapped us.
    pub fn child(self) -> Result<()> {
        let (Handshake { ready: (_, mut tell), go: (mut wait, go_writer) }, mut byte) = (self, [0u8]);
        drop(go_writer);
        unshare(CloneFlags::CLONE_NEWUSER).map_err(syserr("cannot create a user namespace"))?;
        tell.write_all(b"u").map_err(|_| StarterError::Refused("the parent is gone"))?;
        // Without the parent's go-ahead it has already reported why.
        if wait.read(&mut byte).ok() != Some(1) {
            std::process::exit(255)
        }
        Ok(())
    }
    /// In the parent: once `child` is in its namespace, `map` it and let it go on. On
    /// failure the child is killed. A child that failed first has reported why itself; the
    /// caller then only reaps it.
    pub fn parent(self, child: Pid, map: impl FnOnce() -> Result<()>) -> Result<()> {
        // Our own read end of `go` stays open, so a child that died early cannot turn the
        // write below into SIGPIPE.
        let (Handshake { ready: (mut wait, ready_writer), go: (_go_reader, mut tell) }, mut byte) = (self, [0u8]);
        drop(ready_writer);
        if wait.read(&mut byte).ok() != Some(1) {
            return Ok(());
        }
        let mapped = map();
        if mapped.is_err() || tell.write_all(b"g").is_err() {
            sys::kill(child, libc::SIGKILL);
        }
        mapped
    }
}

/// Mounts the image through FUSE (detached) and starts apptainer-squashfuse serving it. The FUSE
/// fd is mounted before the daemon starts (reading an unmounted /dev/fuse fails) and closed
/// here afterwards, so a dead daemon makes accesses fail instead of hang. `ids` own the mount.
/// With `drop_to` (setuid mode) the daemon is detached: it runs as the caller with no
/// privilege, is reparented to init, and exits when the mount goes away, so the container
/// process never sees an unexpected child.
pub fn mount_squashfuse(
    sys: &dyn Sys, image: &Image, ids: (u32, u32), drop_to: Option<&Caller>,
) -> Result<(OwnedFd, Pid)> {
    let (fuse, tree) = crate::image::mount_fuse(sys, ids, drop_to.is_some())?;
    let bin = format!("{}/{SQUASHFUSE}", conf::paths::LIBEXECDIR);
    std::fs::metadata(&bin).map_err(|_| StarterError::Refused("apptainer-squashfuse is not installed"))?;
    let offset = format!("offset={}", image.offset);
    let (src, dev) = (format!("/dev/fd/{}", image.fd.as_raw_fd()), format!("/dev/fd/{}", fuse.as_raw_fd()));
    let argv = [&bin, "-f", "-o", &offset, &src, &dev].map(String::from);
    let (env, keep) = (["PATH=/usr/bin:/bin".to_owned()], [image.fd.as_raw_fd(), fuse.as_raw_fd()]);
    spawn_daemon(&argv, &env, &keep, drop_to.map(|c| move || crate::creds::drop_to(c))).map(|pid| (tree, pid))
}

/// Starts the FUSE daemon `argv` with only 0-2 and `keep` open (every other fd of ours is
/// close-on-exec), in a session of its own: Ctrl-C at the terminal is for the container's
/// process group, and a daemon killed by it would fail every later read with a bus error.
/// Without `detach` the daemon is our child, killed with us. With it, a child runs `detach`,
/// forks the daemon and exits at once: the daemon is adopted by init (or a subreaper), nobody
/// waits for it, and it exits by itself when its mount goes away.
pub fn spawn_daemon(
    argv: &[String], env: &[String], keep: &[RawFd], detach: Option<impl FnOnce() -> Result<()>>,
) -> Result<Pid> {
    if let Fork::Parent { child } = sys::fork().map_err(syserr("fork"))? {
        while detach.is_some() && sys::waitpid(child) == Err(sys::Errno::EINTR) {}
        return Ok(child);
    }
    match detach.map(|prepare| prepare().and_then(|()| sys::fork().map_err(syserr("fork")))) {
        Some(Ok(Fork::Parent { .. })) => std::process::exit(0),
        Some(Err(e)) => crate::fatal(e),
        Some(Ok(Fork::Child)) => {}
        None => drop(prctl::set_pdeathsig(Signal::SIGTERM)),
    }
    let ok = nix::unistd::setsid().and(keep.iter().try_for_each(|&fd| fcntl(fd, F_SETFD(FdFlag::empty())).map(drop)));
    let err = ok.err().unwrap_or_else(|| sys::execve(None, argv, env));
    let _ = writeln!(stderr(), "FATAL:   cannot start {}: {}", argv[0], crate::error::strerror(err));
    std::process::exit(255)
}

pub static PENDING: AtomicI32 = AtomicI32::new(0);

pub extern "C" fn note_signal(sig: i32) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Waits for the container, forwarding signals; returns its exit code (128+n if killed by n).
/// As PID 1 of a PID namespace (`reap_all`) it also reaps every orphan reparented to it.
pub fn supervise(child: Pid, reap_all: bool) -> Result<i32> {
    FORWARDED.iter().for_each(|&s| sys::catch_signal(s, note_signal));
    loop {
        match sys::waitpid(if reap_all { Pid::from_raw(-1) } else { child }) {
            Ok((p, status)) if p == child && libc::WIFEXITED(status) => return Ok(libc::WEXITSTATUS(status)),
            Ok((p, status)) if p == child && libc::WIFSIGNALED(status) => return Ok(128 + libc::WTERMSIG(status)),
            Ok(_) | Err(sys::Errno::EINTR) => {}
            Err(e) => return Err(syserr("waitpid")(e)),
        }
        // Signal 0 (nothing pending) only probes the child.
        sys::kill(child, PENDING.swap(0, Ordering::SeqCst));
    }
}

/// Stops the FUSE daemon after the container is gone.
pub fn stop_daemon(pid: Pid) {
    sys::kill(pid, libc::SIGTERM);
    while sys::waitpid(pid) == Err(sys::Errno::EINTR) {}
}
