//! Every raw syscall of the starter: the mount sequence's behind the `Sys` trait (one method
//! per syscall) so it can be unit-tested with a recording implementation, and the few
//! process-wide ones that `nix` does not wrap safely (the rest of the starter calls nix's
//! safe wrappers directly). This is the only module allowed `unsafe`; each block says why it
//! is sound. Wrappers pass C strings built here from checked Rust strings and return owned
//! fds, so no fd outlives its owner by accident.
#![allow(unsafe_code)]

pub use nix::errno::Errno;
use nix::sys::stat::Mode;
pub use nix::unistd::{ForkResult as Fork, Pid};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub type SysResult<T> = nix::Result<T>;

fn owned(rc: libc::c_long) -> SysResult<OwnedFd> {
    // SAFETY: `rc` is a non-negative fd the kernel just returned to us and nobody else owns.
    Errno::result(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
fn cstr(s: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

pub use libc::{
    AT_FDCWD, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
};
use linux_raw_sys::loop_device::{self as loopdev, loop_config, loop_info64};
/// Read-only and autoclear: the flags of every loop device the starter attaches or shares.
pub const LOOP_FLAGS: u32 = loopdev::LO_FLAGS_READ_ONLY as u32 | loopdev::LO_FLAGS_AUTOCLEAR as u32;

/// One method per syscall the starter makes. The provided methods are the real kernel,
/// used as they are by `LinuxSys`; the unit tests' recording implementation overrides every
/// one of them.
pub trait Sys {
    fn openat2(&self, dir: RawFd, path: &str, flags: i32, mode: u32, resolve: u64) -> SysResult<OwnedFd> {
        let p = cstr(path)?;
        // struct open_how: three u64 (flags, mode, resolve); libc's is non-exhaustive.
        let how: [u64; 3] = [(flags | libc::O_CLOEXEC) as u64, mode as u64, resolve];
        // SAFETY: `p` is NUL-terminated and `how` has the layout of open_how, whose size we
        // pass; both outlive the call. `dir` is AT_FDCWD or an fd the caller keeps open.
        owned(unsafe { libc::syscall(libc::SYS_openat2, dir, p.as_ptr(), &how, size_of_val(&how)) })
    }
    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &str, mode: u32) -> SysResult<()> {
        nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode))
    }
    fn open_tree(&self, dir: RawFd, path: &str, recursive: bool) -> SysResult<OwnedFd> {
        let p = cstr(path)?;
        let bit = |on: bool, flag: i32| if on { flag as u32 } else { 0 };
        let flags = libc::OPEN_TREE_CLONE | bit(true, libc::O_CLOEXEC) | bit(recursive, libc::AT_RECURSIVE);
        let flags = flags | bit(path.is_empty(), libc::AT_EMPTY_PATH);
        // SAFETY: `p` is NUL-terminated and outlives the call; `dir` is AT_FDCWD or open.
        owned(unsafe { libc::syscall(libc::SYS_open_tree, dir, p.as_ptr(), flags) })
    }
    fn mount_setattr(&self, fd: BorrowedFd<'_>, set: u64, propagation: u64, recursive: bool) -> SysResult<()> {
        let attr = libc::mount_attr { attr_set: set, attr_clr: 0, propagation, userns_fd: 0 };
        let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
        let (empty, size) = (c"".as_ptr(), size_of::<libc::mount_attr>());
        // SAFETY: empty NUL-terminated path with AT_EMPTY_PATH; `attr` is a valid mount_attr
        // of the size passed; `fd` is borrowed for the call.
        Errno::result(unsafe { libc::syscall(libc::SYS_mount_setattr, fd.as_raw_fd(), empty, flags, &attr, size) })
            .map(drop)
    }
    fn move_mount(&self, tree: BorrowedFd<'_>, onto: BorrowedFd<'_>) -> SysResult<()> {
        let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
        // SAFETY: both fds are borrowed for the call; both paths are the static empty string
        // that *_EMPTY_PATH requires.
        let rc = unsafe {
            libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), onto.as_raw_fd(), c"".as_ptr(), flags)
        };
        Errno::result(rc).map(drop)
    }
    fn fsopen(&self, fstype: &str) -> SysResult<OwnedFd> {
        let t = cstr(fstype)?;
        // SAFETY: `t` is NUL-terminated and outlives the call.
        owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC) })
    }
    /// `key = value`; an empty value sets a flag option; an empty key creates the superblock.
    fn fsconfig(&self, fs: BorrowedFd<'_>, key: &str, value: &str) -> SysResult<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        let null = std::ptr::null::<libc::c_char>();
        let (cmd, kp, vp) = match (key.is_empty(), value.is_empty()) {
            (true, _) => (libc::FSCONFIG_CMD_CREATE, null, null),
            (false, true) => (libc::FSCONFIG_SET_FLAG, k.as_ptr(), null),
            (false, false) => (libc::FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr()),
        };
        // SAFETY: key and value are NUL-terminated (or NULL where the command takes none)
        // and outlive the call; `fs` is borrowed.
        Errno::result(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, kp, vp, 0) }).map(drop)
    }
    fn fsmount(&self, fs: BorrowedFd<'_>, attrs: u64) -> SysResult<OwnedFd> {
        // SAFETY: `fs` is a configured filesystem context borrowed for the call.
        owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, attrs as u32) })
    }
    fn write(&self, fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<()> {
        (nix::unistd::write(fd, data)? == data.len()).then_some(()).ok_or(Errno::EIO)
    }
    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> SysResult<()> {
        nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name)
    }
}

/// The real kernel.
pub struct LinuxSys;

impl Sys for LinuxSys {}

// Process-wide calls that `nix` does not wrap, or only as `unsafe fn`. They are not on the
// trait because the unit-tested mount planning never makes them.

pub fn getauxval_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
/// Real, effective and saved uids, then gids.
pub fn getresids() -> [(u32, u32, u32); 2] {
    let ([mut r, mut e, mut s], [mut rg, mut eg, mut sg]) = ([0; 3], [0; 3]);
    // SAFETY: six valid out-pointers.
    unsafe { (libc::getresuid(&mut r, &mut e, &mut s), libc::getresgid(&mut rg, &mut eg, &mut sg)) };
    [(r, e, s), (rg, eg, sg)]
}
/// A pidfd of `pid`: it stays bound to that process even if the number is reused.
pub fn pidfd_open(pid: u32) -> SysResult<OwnedFd> {
    // SAFETY: integer arguments; the kernel returns a new fd that we own.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}
/// Whether the process of `pidfd` is still alive (signal 0 only checks).
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: `pidfd` is borrowed for the call; a null siginfo is allowed.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), 0, std::ptr::null::<u8>(), 0) == 0 }
}
pub fn close_range_from(first: u32) -> SysResult<()> {
    // SAFETY: closes fds this process owns above `first`; no Rust object owns them any more
    // (callers drop their OwnedFds first).
    Errno::result(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) }).map(drop)
}
pub fn fork() -> SysResult<Fork> {
    // SAFETY: the starter is single-threaded, so the child may run arbitrary code.
    unsafe { nix::unistd::fork() }
}
/// Waits once for `pid` (-1: any child); returns the pid reaped and its raw wait status
/// (EINTR is the caller's to handle). Raw, unlike nix's: a real-time signal is a status too.
pub fn waitpid(pid: Pid) -> SysResult<(Pid, i32)> {
    let mut status = 0;
    // SAFETY: valid out-pointer.
    Errno::result(unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) }).map(|p| (Pid::from_raw(p), status))
}
/// Sends `sig` (0 only probes, any number is passed on); failure (process gone) is harmless.
pub fn kill(pid: Pid, sig: i32) {
    // SAFETY: integer arguments.
    unsafe { libc::kill(pid.as_raw(), sig) };
}
/// Default SIGPIPE and SIGCHLD (Rust ignores SIGPIPE; a caller may ignore SIGCHLD), an
/// empty environment (nothing of the caller's is read after this), umask 022. SIGXFSZ is
/// ignored until `execve`: under the caller's RLIMIT_FSIZE a write of ours then fails with
/// EFBIG and is reported, instead of killing the starter half-way through its mounts. The
/// frontend leaves it blocked, maybe pending: ignoring it discards that one, and it is
/// unblocked so that the container gets its normal meaning back.
pub fn reset_process() {
    // SAFETY: SIG_DFL and SIG_IGN are always valid dispositions; `set` is a sigset_t
    // initialised by sigemptyset before use; the starter is single-threaded, so no other
    // thread reads environ concurrently; umask takes an integer.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGXFSZ);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::clearenv();
        libc::umask(0o022);
    }
}
/// Makes `sig` interrupt blocking calls and set a flag instead of killing the supervisor.
pub fn catch_signal(sig: i32, handler: extern "C" fn(i32)) {
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}
/// Installs one BPF program with SECCOMP_MODE_FILTER.
pub fn seccomp_install(prog: &[libc::sock_filter]) -> SysResult<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
    let arg = &fprog as *const libc::sock_fprog as libc::c_ulong;
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies the program.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, arg, 0, 0) }).map(drop)
}
/// Executes `path` (argv[0] when `None`).
pub fn execve(path: Option<&str>, argv: &[String], env: &[String]) -> Errno {
    let to_c = |v: &[String]| v.iter().map(|s| cstr(s)).collect::<SysResult<Vec<_>>>();
    let (Ok(a), Ok(e), Ok(p)) = (to_c(argv), to_c(env), cstr(path.unwrap_or(&argv[0]))) else {
        return Errno::EINVAL;
    };
    // SAFETY: SIG_DFL is always valid: the program gets SIGXFSZ's normal meaning back (an
    // ignored signal stays ignored across execve).
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_DFL) };
    let Err(e) = nix::unistd::execve(&p, &a, &e);
    e
}
pub fn loop_get_free(ctl: BorrowedFd<'_>) -> SysResult<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument.
    Errno::result(unsafe { libc::ioctl(ctl.as_raw_fd(), loopdev::LOOP_CTL_GET_FREE.into()) }).map(|n| n as u32)
}
pub fn loop_status(dev: BorrowedFd<'_>) -> SysResult<loop_info64> {
    // SAFETY: loop_info64 holds only integers and arrays of them, for which zero is valid.
    let mut info: loop_info64 = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a writable loop_info64 that outlives the call.
    Errno::result(unsafe { libc::ioctl(dev.as_raw_fd(), loopdev::LOOP_GET_STATUS64.into(), &mut info) })?;
    Ok(info)
}
/// Backs `dev` with `size` bytes of `file` from `offset`, with `LOOP_FLAGS`.
pub fn loop_configure(dev: BorrowedFd<'_>, file: BorrowedFd<'_>, offset: u64, size: u64) -> SysResult<()> {
    // SAFETY: as in `loop_status`; zero is "unset" for every field not set below.
    let mut cfg: loop_config = unsafe { std::mem::zeroed() };
    (cfg.fd, cfg.info.lo_offset, cfg.info.lo_sizelimit) = (file.as_raw_fd() as u32, offset, size);
    cfg.info.lo_flags = LOOP_FLAGS;
    // SAFETY: `cfg` is a valid loop_config that outlives the call; both fds are borrowed.
    Errno::result(unsafe { libc::ioctl(dev.as_raw_fd(), loopdev::LOOP_CONFIGURE.into(), &cfg) }).map(drop)
}
/// Reads at most `max` bytes from `fd` until end of file, then closes it.
pub fn read_fd(fd: RawFd, max: usize) -> SysResult<Vec<u8>> {
    use std::io::Read;
    // An fd that is not open must not become a File: closing it would fail, which debug
    // builds treat as a fatal bug.
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)?;
    // SAFETY: `fd` (the plan) is open, was inherited for us alone and no Rust object owns
    // it; the File takes it over and closes it.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    file.take(max as u64).read_to_end(&mut buf).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(buf)
}
