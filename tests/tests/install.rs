//! End-to-end checks of `make install-suid`: the installed files have the modes and owners
//! the setuid starter's trust model needs, only the starter is setuid, and the plain user can
//! run the installed `apptainer` to print its version.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use apptainer_tests::{
    apptainer_as_user, apptainer_bin, conf_path, is_root, prefix, require, starter_bin,
    starter_suid_bin, test_user_exists,
};

/// (mode including setuid bits, uid, gid) of `path`, without following a final symlink.
fn mode_owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{} is not installed: {e}", path.display()));
    assert!(
        meta.file_type().is_file(),
        "{} is not a regular file",
        path.display()
    );
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn installed() -> bool {
    apptainer_bin().exists()
}

#[test]
fn apptainer_binary_is_root_owned_0755() {
    require!(
        installed(),
        "apptainer installed under the test prefix (make install)"
    );
    let (mode, uid, _) = mode_owner(&apptainer_bin());
    assert_eq!((mode, uid), (0o755, 0), "{}", apptainer_bin().display());
}

#[test]
fn starter_is_root_owned_0755_without_setuid() {
    require!(
        installed(),
        "apptainer installed under the test prefix (make install)"
    );
    let (mode, uid, _) = mode_owner(&starter_bin());
    assert_eq!((mode, uid), (0o755, 0), "{}", starter_bin().display());
}

#[test]
fn starter_suid_is_setuid_root_4755() {
    require!(
        starter_suid_bin().exists(),
        "setuid starter installed under the test prefix (make install-suid)"
    );
    assert_eq!(mode_owner(&starter_suid_bin()), (0o4755, 0, 0));
}

#[test]
fn apptainer_conf_is_root_owned_0644() {
    require!(
        conf_path().exists(),
        "apptainer installed under the test prefix (make install)"
    );
    assert_eq!(mode_owner(&conf_path()), (0o644, 0, 0));
}

#[test]
fn nothing_else_under_the_prefix_is_setuid_or_writable_by_others() {
    require!(
        installed(),
        "apptainer installed under the test prefix (make install)"
    );
    let mut bad = Vec::new();
    for dir in ["bin", "libexec/apptainer", "etc/apptainer"] {
        walk(&prefix().join(dir), &mut |path, meta| {
            let mode = meta.mode() & 0o7777;
            let is_starter_suid = path == starter_suid_bin();
            if (mode & 0o6000 != 0 && !is_starter_suid) || mode & 0o022 != 0 || meta.uid() != 0 {
                bad.push(format!(
                    "{} mode {mode:o} uid {}",
                    path.display(),
                    meta.uid()
                ));
            }
        });
    }
    assert!(
        bad.is_empty(),
        "unsafe installed files:\n{}",
        bad.join("\n")
    );
}

fn walk(path: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
    visit(path, &meta);
    if meta.is_dir() {
        let entries = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
        for entry in entries {
            walk(&entry.expect("directory entry").path(), visit);
        }
    }
}

/// As the reference: `--version` prints `apptainer version X`, the `version` command prints
/// only `X` (scripts parse it), both on one line of standard output.
#[test]
fn plain_user_gets_the_version_from_the_flag_and_the_command() {
    require!(
        installed(),
        "apptainer installed under the test prefix (make install)"
    );
    require!(is_root(), "tests run as root (to switch to the test user)");
    require!(
        test_user_exists(),
        "test user apptest (scripts/test-setup.sh)"
    );
    let flag = apptainer_as_user(&["--version"]);
    assert!(flag.success() && flag.stderr.is_empty(), "{flag:?}");
    let version = flag
        .stdout
        .strip_prefix("apptainer version ")
        .unwrap_or_else(|| panic!("expected `apptainer version X`: {flag:?}"));
    assert!(
        version.lines().count() == 1 && !version.trim().is_empty() && !version.contains(' '),
        "{flag:?}"
    );
    let command = apptainer_as_user(&["version"]);
    assert!(
        command.success() && command.stderr.is_empty(),
        "{command:?}"
    );
    assert_eq!(
        command.stdout, version,
        "`apptainer version` prints the bare version"
    );
}
