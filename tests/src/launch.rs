//! Shared pieces of the action-command tests (exec, run, shell, ...): the two launch modes a
//! plain user has, a fixture pulled into the user's own directory, and the command builder.

use crate::{
    fixture_oci_archive, fixtures_built, installed, setuid_starter, tempdir_for, test_user_exists,
    user_namespaces_available, UserCmd,
};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// How a plain user's container is launched: the setuid starter, or `--userns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Setuid,
    Userns,
}

impl Mode {
    /// Both modes, setuid first.
    pub fn all() -> [Mode; 2] {
        [Mode::Setuid, Mode::Userns]
    }

    /// Whether this host can launch in this mode (starter-suid installed / user namespaces).
    pub fn available(self) -> bool {
        match self {
            Mode::Setuid => setuid_starter().is_some(),
            Mode::Userns => user_namespaces_available(),
        }
    }

    /// The action flag that selects this mode (setuid is the default when installed).
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Mode::Setuid => None,
            Mode::Userns => Some("--userns"),
        }
    }
}

/// What [`ready`] checks, for `require!`.
pub const READY: &str = "installed apptainer, test user, fixtures and the starter for this mode";

/// Installed apptainer, test user, built fixtures and `mode` available.
pub fn ready(mode: Mode) -> bool {
    installed() && test_user_exists() && fixtures_built() && mode.available()
}

/// A fixture pulled by a user into a directory of its own (kept while this lives).
pub struct PulledImage {
    pub dir: TempDir,
    pub sif: PathBuf,
}

impl PulledImage {
    /// The SIF path as an argument.
    pub fn arg(&self) -> &str {
        self.sif.to_str().unwrap()
    }
}

/// Pulls the oci-archive fixture `name:tag` as `user` into a fresh directory of that user,
/// as `<tag>.sif`, with the directory's own cache.
pub fn pull_fixture(user: &str, name: &str, tag: &str) -> PulledImage {
    let dir = tempdir_for(user);
    let sif = pull_fixture_into(user, dir.path(), name, tag, &format!("{tag}.sif"), &[]);
    PulledImage { dir, sif }
}

/// Pulls the oci-archive fixture `name:tag` as `user` to `dir/dest` (`flags` such as
/// `--sandbox` go before the destination), with APPTAINER_CACHEDIR=`dir/cache`.
pub fn pull_fixture_into(
    user: &str,
    dir: &Path,
    name: &str,
    tag: &str,
    dest: &str,
    flags: &[&str],
) -> PathBuf {
    let out = dir.join(dest);
    let src = format!("oci-archive:{}", fixture_oci_archive(name, tag).display());
    let mut argv = vec!["pull"];
    argv.extend_from_slice(flags);
    argv.push(out.to_str().unwrap());
    argv.push(&src);
    UserCmd::new(&argv)
        .user(user)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .run()
        .assert_success();
    out
}

/// `apptainer ACTION [--userns] FLAGS... IMAGE ARGS...` as the test user.
pub fn action(mode: Mode, action: &str, flags: &[&str], image: &Path, args: &[&str]) -> UserCmd {
    let mut argv = vec![action];
    argv.extend(mode.flag());
    argv.extend_from_slice(flags);
    argv.push(image.to_str().unwrap());
    argv.extend_from_slice(args);
    UserCmd::new(&argv)
}

/// Defines `mod setuid` and `mod userns`, each with one `#[test]` per named function
/// `fn(Mode)` of the calling module.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod setuid {
            $(#[test] fn $name() { super::$name($crate::launch::Mode::Setuid) })*
        }
        mod userns {
            $(#[test] fn $name() { super::$name($crate::launch::Mode::Userns) })*
        }
    };
}
