//! Every raw syscall of the starter, behind the `Sys` trait (one method per syscall) so the
//! mount sequence can be unit-tested with a recording implementation. This is the only module
//! allowed `unsafe`; each block says why it is sound. Wrappers pass C strings built here from
//! checked Rust strings and return owned fds, so no fd outlives its owner by accident.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// An errno from a failed syscall.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        f.write_str(text.split(" (os error").next().unwrap_or_default())
    }
}
pub type SysResult<T> = Result<T, Errno>;

fn last() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}
fn check(rc: impl Into<i64>) -> SysResult<i64> {
    let rc = rc.into();
    (rc >= 0).then_some(rc).ok_or_else(last)
}
fn owned(rc: libc::c_long) -> SysResult<OwnedFd> {
    // SAFETY: `rc` is a non-negative fd the kernel just returned to us and nobody else owns.
    check(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
fn cstr(s: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| Errno(libc::EINVAL))
}

pub use libc::{
    AT_FDCWD, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
};
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
pub const LO_FLAGS_READ_ONLY: u32 = 1;
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct LoopInfo {
    pub device: u64,
    pub inode: u64,
    pub rdevice: u64,
    pub offset: u64,
    pub sizelimit: u64,
    /// lo_number, lo_encrypt_type and lo_encrypt_key_size, unused here.
    numbers: [u32; 3],
    pub flags: u32,
    /// file_name[64], crypt_name[64] and encrypt_key[32], all unused here.
    names: [[u8; 32]; 5],
    init: [u64; 2],
}
#[repr(C)]
#[derive(Default)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo,
    reserved: [u64; 8],
}

/// Result of `fork`.
pub enum Fork {
    Child,
    Parent(libc::pid_t),
}

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
        let n = cstr(name)?;
        // SAFETY: `n` is NUL-terminated; `dir` is borrowed for the call.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), mode) }).map(drop)
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
        check(unsafe { libc::syscall(libc::SYS_mount_setattr, fd.as_raw_fd(), empty, flags, &attr, size) }).map(drop)
    }
    fn move_mount(&self, tree: BorrowedFd<'_>, onto: BorrowedFd<'_>) -> SysResult<()> {
        let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
        // SAFETY: both fds are borrowed for the call; both paths are the static empty string
        // that *_EMPTY_PATH requires.
        let rc = unsafe {
            libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), onto.as_raw_fd(), c"".as_ptr(), flags)
        };
        check(rc).map(drop)
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
        check(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, kp, vp, 0) }).map(drop)
    }
    fn fsmount(&self, fs: BorrowedFd<'_>, attrs: u64) -> SysResult<OwnedFd> {
        // SAFETY: `fs` is a configured filesystem context borrowed for the call.
        owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, attrs as u32) })
    }
    fn write(&self, fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<()> {
        // SAFETY: the pointer and length describe `data`, which outlives the call.
        let n = check(unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) } as i64)?;
        (n as usize == data.len()).then_some(()).ok_or(Errno(libc::EIO))
    }
    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> SysResult<()> {
        let (t, n) = (cstr(target)?, cstr(name)?);
        // SAFETY: both strings are NUL-terminated; `dir` is borrowed for the call.
        check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) }).map(drop)
    }
}

/// The real kernel.
pub struct LinuxSys;

impl Sys for LinuxSys {}

// Process-wide calls used only by the straight-line sequence in main.rs. They are not on
// the trait because the unit-tested mount planning never makes them.

/// Whether fds 0, 1 and 2 are all open (a closed one would be reused by our own opens).
pub fn stdio_open() -> bool {
    // SAFETY: F_GETFD only queries the flags of an fd number; no memory is involved.
    (0..3).all(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
}
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
pub fn getgroups() -> SysResult<Vec<u32>> {
    let mut buf = vec![0u32; 65536];
    // SAFETY: `buf` has room for the count we pass.
    let n = check(unsafe { libc::getgroups(buf.len() as i32, buf.as_mut_ptr()) })?;
    buf.truncate(n as usize);
    Ok(buf)
}
pub fn setgroups(groups: &[u32]) -> SysResult<()> {
    // SAFETY: pointer and length describe `groups`.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }).map(drop)
}
pub fn setresgid(g: u32) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresgid(g, g, g) }).map(drop)
}
pub fn setresuid(u: u32) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresuid(u, u, u) }).map(drop)
}
/// Sets the filesystem uid and gid and returns whether the kernel took both.
pub fn setfsids(uid: u32, gid: u32) -> bool {
    // SAFETY: plain integer arguments; calling with -1 only queries the current value.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
        libc::setfsgid(u32::MAX) as u32 == gid && libc::setfsuid(u32::MAX) as u32 == uid
    }
}
pub fn prctl(op: i32, arg: libc::c_ulong) -> SysResult<i32> {
    // SAFETY: the options used here take integer arguments, except PR_SET_NAME, which is only
    // given a static NUL-terminated string (the kernel reads at most 16 bytes of it).
    check(unsafe { libc::prctl(op, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) }).map(|r| r as i32)
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
/// Enters the namespaces `flags` of the process of `pidfd`, all at once.
pub fn setns(pidfd: BorrowedFd<'_>, flags: i32) -> SysResult<()> {
    // SAFETY: `pidfd` is borrowed for the call; integer flags.
    check(unsafe { libc::setns(pidfd.as_raw_fd(), flags) }).map(drop)
}
pub fn unshare(flags: i32) -> SysResult<()> {
    // SAFETY: integer flags only.
    check(unsafe { libc::unshare(flags) }).map(drop)
}
pub fn sethostname(name: &str) -> SysResult<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}
pub fn fchdir(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: `fd` is borrowed for the call.
    check(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(drop)
}
/// Changes the owner of what `fd` (O_PATH is fine) refers to.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: empty NUL-terminated path with AT_EMPTY_PATH; `fd` is borrowed for the call.
    check(unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) }).map(drop)
}
pub fn chdir(path: &str) -> SysResult<()> {
    let p = cstr(path)?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chdir(p.as_ptr()) }).map(drop)
}
/// `pivot_root(".", ".")` then detaching the old root stacked on top: no path of the host
/// is named, and the old root leaves this mount namespace entirely.
pub fn pivot_to_cwd() -> SysResult<()> {
    // SAFETY: static NUL-terminated paths.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
    // SAFETY: static NUL-terminated path.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    chdir("/")
}
/// Detaches the mount at `path` (lazily: it goes once nothing uses it).
pub fn umount_detach(path: &str) -> SysResult<()> {
    let p = cstr(path)?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } as libc::c_long).map(drop)
}
pub fn close_range_from(first: u32) -> SysResult<()> {
    // SAFETY: closes fds this process owns above `first`; no Rust object owns them any more
    // (callers drop their OwnedFds first).
    check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) }).map(drop)
}
pub fn fork() -> SysResult<Fork> {
    // SAFETY: the starter is single-threaded, so the child may run arbitrary code.
    match check(unsafe { libc::fork() })? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid as libc::pid_t)),
    }
}
/// Waits once for `pid` (-1: any child); returns the pid reaped and its raw wait status
/// (EINTR is the caller's to handle).
pub fn waitpid(pid: libc::pid_t) -> SysResult<(libc::pid_t, i32)> {
    let mut status = 0;
    // SAFETY: valid out-pointer.
    check(unsafe { libc::waitpid(pid, &mut status, 0) }).map(|p| (p as libc::pid_t, status))
}
/// Starts a new session, leaving the terminal's foreground process group.
pub fn setsid() -> SysResult<()> {
    // SAFETY: no arguments; fails only for a process group leader.
    check(unsafe { libc::setsid() }).map(drop)
}
pub fn kill(pid: libc::pid_t, sig: i32) {
    // SAFETY: integer arguments; failure (process gone) is harmless.
    unsafe { libc::kill(pid, sig) };
}
/// Lets `fd` survive execve (for the FUSE daemon only).
pub fn clear_cloexec(fd: RawFd) -> SysResult<()> {
    // SAFETY: integer arguments; F_SETFD only changes the fd's flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
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
    check(unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, arg, 0, 0) }).map(drop)
}
/// Sets the umask the container process inherits.
pub fn umask(mask: u32) {
    // SAFETY: umask takes an integer and cannot fail.
    unsafe { libc::umask(mask) };
}
/// Executes `path` (argv[0] when `None`).
pub fn execve(path: Option<&str>, argv: &[String], env: &[String]) -> Errno {
    let to_c = |v: &[String]| v.iter().map(|s| CString::new(s.as_str()).ok()).collect::<Option<Vec<_>>>();
    let (Some(a), Some(e), Ok(p)) = (to_c(argv), to_c(env), CString::new(path.unwrap_or(&argv[0]))) else {
        return Errno(libc::EINVAL);
    };
    let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    let (ap, ep) = (ptrs(&a), ptrs(&e));
    // SAFETY: SIG_DFL is always valid: the program gets SIGXFSZ's normal meaning back (an
    // ignored signal stays ignored across execve). argv and envp are NULL-terminated arrays
    // of NUL-terminated strings that outlive the call (on success it does not return).
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
        libc::execve(p.as_ptr(), ap.as_ptr(), ep.as_ptr())
    };
    last()
}
pub fn loop_get_free(ctl: BorrowedFd<'_>) -> SysResult<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument.
    check(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) }).map(|n| n as u32)
}
pub fn loop_status(dev: BorrowedFd<'_>) -> SysResult<LoopInfo> {
    let mut info = LoopInfo::default();
    // SAFETY: `info` is a writable loop_info64.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64, &mut info) })?;
    Ok(info)
}
pub fn loop_configure(dev: BorrowedFd<'_>, file: BorrowedFd<'_>, offset: u64, size: u64) -> SysResult<()> {
    let info =
        LoopInfo { offset, sizelimit: size, flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, ..Default::default() };
    let cfg = LoopConfig { fd: file.as_raw_fd() as u32, info, ..Default::default() };
    // SAFETY: `cfg` is a valid loop_config that outlives the call; both fds are borrowed.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg) }).map(drop)
}
pub fn fstat(fd: BorrowedFd<'_>) -> SysResult<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable; `fd` is borrowed.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}
/// Reads at most `max` bytes from `fd` until end of file, then closes it.
pub fn read_fd(fd: RawFd, max: usize) -> SysResult<Vec<u8>> {
    use std::io::Read;
    // SAFETY: F_GETFD only queries the fd's flags. An fd that is not open must not become
    // a File: closing it would fail, which debug builds treat as a fatal bug.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: `fd` (the plan) is open, was inherited for us alone and no Rust object owns
    // it; the File takes it over and closes it.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    file.take(max as u64).read_to_end(&mut buf).map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(buf)
}
