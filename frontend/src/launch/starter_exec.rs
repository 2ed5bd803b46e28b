//! Choosing the starter binary and replacing the frontend with it, the Plan's JSON on fd 3.
//! The frontend execs (never forks and waits), so the starter's exit status is the
//! container's and a Ctrl-C from the terminal reaches the container's process group.

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The fd the starter reads its Plan from.
pub const PLAN_FD: i32 = 3;

/// Which starter runs the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarterChoice {
    pub path: PathBuf,
    /// The setuid-root starter (kernel mounts, no user namespace).
    pub setuid: bool,
}

/// The reference's rule: the setuid starter when it is installed, the caller is not root,
/// no user namespace was asked for (`--userns`, `--fakeroot`) and `allow setuid = yes`;
/// otherwise the unprivileged starter in a user namespace.
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
        setuid: false,
    })
}

fn is_setuid_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o4000 != 0)
}

/// Writes `plan_json` to a sealed memfd at fd 3 and execs the starter. Returns only on error.
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
    let away = |f: std::fs::File| if f.as_raw_fd() == PLAN_FD { f.try_clone() } else { Ok(f) };
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

/// A sealed, rewound memfd holding the Plan (an unlinked temporary file where memfd is
/// unavailable). Sealing means nobody holding the fd can change the Plan afterwards.
fn plan_fd(plan_json: &[u8]) -> Result<OwnedFd> {
    let flags = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
    let (mut file, sealable) = match memfd_create(c"apptainer-plan", flags) {
        Ok(fd) => (std::fs::File::from(fd), true),
        Err(_) => (
            tempfile::tempfile().context("cannot create a file for the launch plan")?,
            false,
        ),
    };
    file.write_all(plan_json)
        .context("cannot write the launch plan")?;
    file.seek(SeekFrom::Start(0))?;
    if sealable {
        let seals = SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SEAL;
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))
            .context("cannot seal the launch plan")?;
    }
    Ok(OwnedFd::from(file))
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
    fn plan_fd_is_sealed_and_rewound() {
        let fd = plan_fd(b"{\"version\":1}").unwrap();
        let mut f = std::fs::File::from(fd);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "{\"version\":1}");
        assert!(
            f.write_all(b"x").is_err(),
            "the plan must be sealed against writes"
        );
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
