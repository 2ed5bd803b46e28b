//! Tests of the trusted walk. They build real directory trees with real owners and modes, so
//! most need root: without it they print SKIPPED, unless CI=true, where they fail.

use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Skips a test that needs a prerequisite, except in CI where a skip would hide a gap.
macro_rules! require {
    ($cond:expr, $why:literal) => {
        if !$cond {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI must provide: {}", $why);
            }
            eprintln!("SKIPPED: {}", $why);
            return;
        }
    };
}

/// `/proc/self` belongs to the effective uid of the process reading it.
fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A fresh root-owned 0755 directory under /run (root-owned and not world-writable, unlike
/// /tmp), removed on drop.
struct TrustedDir(PathBuf);

impl TrustedDir {
    fn new() -> TrustedDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/run/conf-trusted-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TrustedDir(dir)
    }

    /// Writes `text` to `name` (mode 0644) and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

impl Drop for TrustedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn trusted_err(path: &Path) -> ConfError {
    match load_trusted(path) {
        Ok(conf) => panic!("{} was trusted: {:?}", path.display(), *conf),
        Err(e) => e,
    }
}

#[test]
fn a_root_owned_file_in_root_owned_directories_is_trusted() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let path = dir.file(
        "etc/apptainer/apptainer.conf",
        "mount proc = no\nbind path = /opt\n",
    );
    let conf = load_trusted(&path).unwrap();
    assert!(!conf.mount_proc);
    assert_eq!(conf.bind_path, [crate::BindPathEntry::same("/opt")]);
}

#[test]
fn a_file_not_owned_by_root_is_refused() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let path = dir.file("apptainer.conf", "");
    chown(&path, Some(65534), None).unwrap();
    let e = trusted_err(&path);
    assert!(
        matches!(e, ConfError::NotRootOwned { uid: 65534, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("{}: owned by uid 65534, not by root", path.display())
    );
}

#[test]
fn a_group_or_world_writable_file_is_refused() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let path = dir.file("apptainer.conf", "");
    for mode in [0o664, 0o646, 0o666] {
        set_mode(&path, mode);
        let e = trusted_err(&path);
        assert!(
            matches!(e, ConfError::WritableByOthers { .. }),
            "{mode:o}: {e}"
        );
        assert!(e.to_string().contains(&format!("(mode {mode:04o})")), "{e}");
    }
}

#[test]
fn a_writable_or_foreign_parent_directory_is_refused_by_name() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let path = dir.file("etc/apptainer.conf", "");
    let parent = dir.0.join("etc");
    set_mode(&parent, 0o775);
    let e = trusted_err(&path);
    assert!(
        matches!(&e, ConfError::WritableByOthers { path, .. } if *path == parent.display().to_string()),
        "{e}"
    );
    set_mode(&parent, 0o1777);
    assert!(matches!(
        trusted_err(&path),
        ConfError::WritableByOthers { .. }
    ));
    set_mode(&parent, 0o755);
    chown(&parent, Some(1000), None).unwrap();
    let e = trusted_err(&path);
    assert!(
        matches!(&e, ConfError::NotRootOwned { path, uid: 1000 } if *path == parent.display().to_string()),
        "{e}"
    );
}

#[test]
fn a_sticky_world_writable_directory_like_tmp_is_refused() {
    require!(is_root(), "running as root");
    let tmp = tempfile_in_tmp();
    let e = trusted_err(&tmp);
    assert!(
        matches!(e, ConfError::WritableByOthers { ref path, .. } if path == "/tmp"),
        "{e}"
    );
    let _ = fs::remove_file(&tmp);
}

fn tempfile_in_tmp() -> PathBuf {
    let path = PathBuf::from(format!(
        "/tmp/conf-trusted-test-{}.conf",
        std::process::id()
    ));
    fs::write(&path, "").unwrap();
    path
}

#[test]
fn a_symlink_as_the_file_is_refused() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let real = dir.file("real.conf", "");
    let link = dir.0.join("apptainer.conf");
    symlink(&real, &link).unwrap();
    let e = trusted_err(&link);
    assert!(
        matches!(e, ConfError::Symlink { ref path } if *path == link.display().to_string()),
        "{e}"
    );
}

#[test]
fn a_symlink_as_a_directory_component_is_refused() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    dir.file("real/apptainer.conf", "");
    symlink(dir.0.join("real"), dir.0.join("etc")).unwrap();
    let e = trusted_err(&dir.0.join("etc/apptainer.conf"));
    assert!(
        matches!(e, ConfError::Symlink { ref path } if path.ends_with("/etc")),
        "{e}"
    );
}

#[test]
fn a_fifo_directory_or_device_is_not_a_regular_file() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let fifo = dir.0.join("fifo.conf");
    let made = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("0644")
        .arg(&fifo)
        .status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    // O_NONBLOCK: opening a FIFO with no writer must not hang the starter.
    assert!(matches!(
        trusted_err(&fifo),
        ConfError::NotRegularFile { .. }
    ));
    fs::create_dir(dir.0.join("d.conf")).unwrap();
    assert!(matches!(
        trusted_err(&dir.0.join("d.conf")),
        ConfError::NotRegularFile { .. }
    ));
    assert!(matches!(
        trusted_err(Path::new("/dev/null")),
        ConfError::NotRegularFile { .. }
    ));
}

#[test]
fn a_file_as_an_inner_component_is_not_a_directory() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let file = dir.file("plain", "");
    let e = trusted_err(&file.join("apptainer.conf"));
    assert!(matches!(e, ConfError::NotDirectory { .. }), "{e}");
}

#[test]
fn a_file_over_the_cap_is_refused_before_parsing() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let big = "# padding\n".repeat((MAX_CONF_BYTES as usize) / 10 + 1);
    let path = dir.file("apptainer.conf", &big);
    assert!(matches!(
        trusted_err(&path),
        ConfError::TooLarge {
            max: MAX_CONF_BYTES,
            ..
        }
    ));
    assert!(matches!(load(&path), Err(ConfError::TooLarge { .. })));
}

#[test]
fn a_parse_error_in_a_trusted_file_names_the_full_path_and_line() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let path = dir.file("apptainer.conf", "mount proc = yes\nallow setuid = maybe\n");
    assert_eq!(
        trusted_err(&path).to_string(),
        format!(
            "{}:2: \"allow setuid\" must be yes or no, not \"maybe\"",
            path.display()
        )
    );
}

#[test]
fn a_file_others_cannot_read_has_its_values_kept_out_of_errors() {
    require!(is_root(), "running as root");
    let dir = TrustedDir::new();
    let path = dir.file("apptainer.conf", "allow setuid = hunter2\n");
    set_mode(&path, 0o600);
    let e = trusted_err(&path).to_string();
    assert!(
        !e.contains("hunter2") && e.contains("\"allow setuid\" must be yes or no"),
        "{e}"
    );
}

#[test]
fn relative_paths_and_dot_components_are_refused() {
    for p in [
        "etc/apptainer.conf",
        "/etc/../etc/apptainer.conf",
        "/etc/./apptainer.conf",
        "/",
    ] {
        let e = trusted_err(Path::new(p));
        assert!(
            matches!(
                e,
                ConfError::NotNormalAbsolute { .. } | ConfError::NotRegularFile { .. }
            ),
            "{p}: {e}"
        );
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let e = trusted_err(Path::new("/nonexistent-conf-dir/apptainer.conf"));
    assert!(matches!(e, ConfError::Io { op: "open", .. }), "{e}");
    assert!(
        e.to_string().starts_with("/nonexistent-conf-dir: open: "),
        "{e}"
    );
}

#[test]
fn plain_load_ignores_ownership_but_not_the_content_rules() {
    let path = std::env::temp_dir().join(format!("conf-plain-test-{}.conf", std::process::id()));
    fs::write(&path, "mount tmp = no\n").unwrap();
    set_mode(&path, 0o666);
    assert!(!load(&path).unwrap().mount_tmp);
    fs::write(&path, "mount tmp = nope\n").unwrap();
    assert!(matches!(
        load(&path),
        Err(ConfError::BadValue { line: 1, .. })
    ));
    fs::remove_file(&path).unwrap();
}

#[test]
fn control_characters_in_paths_are_escaped_in_errors() {
    let e = trusted_err(Path::new("/nonexistent\n\u{1b}[31mred/apptainer.conf"));
    let msg = e.to_string();
    assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
}
