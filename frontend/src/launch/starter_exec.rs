//! Choosing the starter binary and replacing the frontend with it, the Plan's JSON on fd 3.
//! The frontend execs (never forks and waits), so the starter's exit status is the
//! container's and a Ctrl-C from the terminal reaches the container's process group.

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The fd the starter reads its Plan from.
pub const PLAN_FD: i32 = 3;

/// Which starter runs the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarterChoice {
    pub path: PathBuf,
    /// Privileged: kernel mounts, no user namespace. The setuid-root starter, or the plain
    /// one run by root.
    pub setuid: bool,
}

/// The reference's rule: the setuid starter when it is installed, the caller is not root,
/// no user namespace was asked for (`--userns`, `--fakeroot`) and `allow setuid = yes`;
/// otherwise the unprivileged starter, in a user namespace, except for root: root runs it
/// privileged (host ids, root's capabilities, kernel mounts) when it holds CAP_SYS_ADMIN in
/// the initial user namespace, whatever `allow setuid` says.
pub fn choose(
    libexec_bin: &Path,
    uid: u32,
    want_userns: bool,
    allow_setuid: bool,
) -> Result<StarterChoice> {
    let suid = libexec_bin.join("starter-suid");
    if uid != 0 && !want_userns && allow_setuid && is_setuid_root(&suid) {
        return Ok(StarterChoice {
            path: suid,
            setuid: true,
        });
    }
    let plain = libexec_bin.join("starter");
    if !plain.is_file() {
        bail!("the starter {:?} is not installed", plain.display());
    }
    Ok(StarterChoice {
        path: plain,
        setuid: uid == 0 && !want_userns && root_is_privileged(),
    })
}

/// Makes a write beyond the caller's RLIMIT_FSIZE (`ulimit -f`) fail with EFBIG, reported
/// (or ignored, for best-effort caches) like any other write error, instead of SIGXFSZ
/// killing the frontend (exit 153). The signal stays blocked, perhaps pending, across the
/// exec; the starter discards and unblocks it, so the container gets its meaning back.
pub fn defer_file_size_signal() {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGXFSZ);
    let _ = set.thread_block();
}

fn is_setuid_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o4000 != 0)
}

/// Whether this process is in the initial user namespace (all ids mapped to themselves)
/// with CAP_SYS_ADMIN effective: root inside another container's user namespace cannot
/// make kernel mounts, so it gets a user namespace as a plain user does.
fn root_is_privileged() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let initial = read("/proc/self/uid_map")
        .split_whitespace()
        .eq(["0", "0", "4294967295"]);
    let cap_eff = read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u32 = 21;
    initial && cap_eff & (1 << CAP_SYS_ADMIN) != 0
}

/// Puts `plan_json` in a pipe at fd 3 and execs the starter. Returns only on error.
pub fn exec(
    starter: &StarterChoice,
    plan_json: &[u8],
    image_name: &str,
) -> Result<std::convert::Infallible> {
    let fd = plan_fd(plan_json)?;
    place_at_plan_fd(fd)?;
    let err = std::process::Command::new(&starter.path)
        .arg0(format!("Apptainer runtime parent: {image_name}"))
        .env_clear()
        .env("APPTAINER_MESSAGELEVEL", crate::log::level().to_string())
        .exec();
    Err(err).with_context(|| format!("cannot execute the starter {:?}", starter.path.display()))
}

/// Starts the starter as a child with the Plan on fd 3, `title` as its argv[0], no stdin and
/// stdout/stderr going to `stdout`/`stderr` (an instance's log files). The starter detaches
/// itself (new session) once it reads an instance Plan; the caller keeps the `Child`.
pub fn spawn_detached(
    starter: &StarterChoice,
    plan_json: &[u8],
    title: &str,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> Result<std::process::Child> {
    // fd 3 is about to receive the Plan: move a log file that sits there out of the way.
    let away = |f: std::fs::File| {
        if f.as_raw_fd() == PLAN_FD {
            f.try_clone()
        } else {
            Ok(f)
        }
    };
    let (stdout, stderr) = (away(stdout)?, away(stderr)?);
    let fd = plan_fd(plan_json)?;
    place_at_plan_fd(fd)?;
    let child = std::process::Command::new(&starter.path)
        .arg0(title)
        .env_clear()
        .env("APPTAINER_MESSAGELEVEL", crate::log::level().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot execute the starter {:?}", starter.path.display()));
    // Our copy of the Plan is no longer needed (the child has its own fd 3).
    let _ = nix::unistd::close(PLAN_FD);
    child
}

/// A pipe holding the whole Plan, its write end closed, so the starter reads it to the end.
/// Unlike a memfd or a file, a pipe is not subject to the caller's RLIMIT_FSIZE (`ulimit
/// -f`), whose SIGXFSZ would kill the frontend (exit 153). Nobody can change the Plan once
/// written. The pipe is grown first, so the write cannot block: a Plan is at most 1 MiB,
/// the default /proc/sys/fs/pipe-max-size.
fn plan_fd(plan_json: &[u8]) -> Result<OwnedFd> {
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe for the launch plan")?;
    let capacity = fcntl(write.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).unwrap_or(0);
    if usize::try_from(capacity).unwrap_or(0) < plan_json.len() {
        let len = i32::try_from(plan_json.len()).unwrap_or(i32::MAX);
        fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(len)).with_context(|| {
            format!(
                "the launch plan ({} bytes) does not fit in a pipe (see /proc/sys/fs/pipe-max-size)",
                plan_json.len()
            )
        })?;
    }
    std::fs::File::from(write)
        .write_all(plan_json)
        .context("cannot write the launch plan")?;
    Ok(read)
}

/// Puts the Plan at fd 3 without close-on-exec; every other fd we opened keeps it.
fn place_at_plan_fd(fd: OwnedFd) -> Result<()> {
    if fd.as_raw_fd() == PLAN_FD {
        fcntl(PLAN_FD, FcntlArg::F_SETFD(FdFlag::empty()))
            .context("cannot pass the launch plan")?;
        // fd 3 must stay open for the exec.
        std::mem::forget(fd);
        return Ok(());
    }
    // dup2's new descriptor never has FD_CLOEXEC; whatever was at fd 3 is replaced.
    nix::unistd::dup2(fd.as_raw_fd(), PLAN_FD).context("cannot pass the launch plan")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn plan_fd_holds_the_whole_plan_up_to_its_size_cap_and_cannot_be_written() {
        let fd = plan_fd(b"{\"version\":1}").unwrap();
        let mut f = std::fs::File::from(fd);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "{\"version\":1}");
        assert!(
            f.write_all(b"x").is_err(),
            "the plan's fd must be read-only"
        );
        // More than the default pipe size, and the largest Plan the starter accepts.
        for len in [100_000, starter::plan::MAX_PLAN_BYTES] {
            let big = vec![b'x'; len];
            let mut f = std::fs::File::from(plan_fd(&big).unwrap());
            let mut back = Vec::new();
            f.read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), len);
        }
    }

    #[test]
    fn root_asking_for_a_user_namespace_gets_the_unprivileged_starter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("starter"), b"").unwrap();
        assert!(!choose(dir.path(), 0, true, true).unwrap().setuid);
        let c = choose(dir.path(), 0, false, false).unwrap();
        assert_eq!(c.path, dir.path().join("starter"));
        assert_eq!(c.setuid, root_is_privileged());
    }

    #[test]
    fn setuid_starter_only_when_installed_setuid_and_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("starter"), b"").unwrap();
        std::fs::write(dir.path().join("starter-suid"), b"").unwrap();
        // Not setuid root here, so never chosen.
        let c = choose(dir.path(), 1000, false, true).unwrap();
        assert!(!c.setuid);
        assert_eq!(c.path, dir.path().join("starter"));
        let empty = tempfile::tempdir().unwrap();
        assert!(choose(empty.path(), 1000, true, true).is_err());
    }
}
