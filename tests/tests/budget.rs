//! The starter stays small and its dependencies stay on the reviewed list (STYLE.md §10):
//! a line budget for starter/src and `cargo tree -p starter -e normal` within
//! starter/ALLOWED_DEPS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The design's target is ~1500. Both install modes with FUSE in each, shared loop
/// devices, PID-namespace supervision, the extraction fallback and fakeroot with
/// subordinate id ranges (newuidmap, or maps written by the setuid parent) came to 1,649
/// code lines (blank and comment lines not counted); removing duplicated syscall wrappers
/// and error plumbing brought them to 1,435 with every feature and check kept.
///
/// Features added since, in code lines (as rustfmt with starter/rustfmt.toml lays them
/// out): `--overlay` directories and images, a SIF's overlay partition, fuse2fs and
/// fuse-overlayfs daemons, image locks and GPU device nodes (+184, overlay.rs, rootfs.rs);
/// instances, `exec instance://` through a pidfd-checked setns and the `appinit` that
/// keeps them (+68, join.rs); the container's capability set for root (`--keep-privs`,
/// `--no-privs`, `--add-caps`, `--drop-caps`, +56); real root run privileged without a
/// user namespace (+17); SIGXFSZ under the caller's RLIMIT_FSIZE (+8); a rustfmt-clean
/// layout (+9), for 1,777. Shrink passes that kept every feature, check, message and
/// security property took back 69: a tighter overlay sequence, one FUSE-mount helper, one
/// daemon exec path, the squashfuse switch; then the build mode as the `Caller.setuid` it
/// duplicated, one `clone_tree` (open_tree + mount_setattr, always NOSUID) for binds,
/// generated files and sandboxes, one squashfuse mount-and-serve function, the
/// `limit container paths` test shared with conf, and single-expression forms of a few
/// branches. The starter now measures 1,708 lines, this budget covering that plus a
/// rounding margin. Going near 1,500 would mean dropping one of the features above or
/// moving the process-wide syscall wrappers of sys.rs onto a library (`nix`, on the
/// allowed list but not linked), a dependency review of its own. This limit only
/// ratchets down; raising it needs the same review as a new dependency.
const LINE_BUDGET: usize = 1710;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Crate names in starter/ALLOWED_DEPS: one a line, `#` starts a comment.
fn allowed() -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("starter/ALLOWED_DEPS"))
        .expect("read ALLOWED_DEPS");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Lines of code (not blank, not comments) outside test code: `tests.rs` files and
/// everything from a `#[cfg(test)]` line to the end of its file.
fn non_test_lines(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("read starter/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            n += non_test_lines(&path);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|f| f != "tests.rs")
        {
            let text = std::fs::read_to_string(&path).expect("read source");
            n += text
                .lines()
                .map(str::trim)
                .take_while(|l| *l != "#[cfg(test)]")
                .filter(|l| !l.is_empty() && !l.starts_with("//"))
                .count();
        }
    }
    n
}

#[test]
fn starter_source_stays_within_its_line_budget() {
    let n = non_test_lines(&workspace().join("starter/src"));
    assert!(
        n <= LINE_BUDGET,
        "starter/src has {n} non-test lines; the budget is {LINE_BUDGET}"
    );
}

#[test]
fn starter_depends_only_on_allowed_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "-p",
            "starter",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let allowed = allowed();
    let tree = String::from_utf8_lossy(&out.stdout).into_owned();
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"serde_json"),
        "cargo tree output looks wrong: {tree}"
    );
    for name in names.into_iter().filter(|n| *n != "starter") {
        assert!(
            allowed.iter().any(|a| a == name),
            "starter now depends on `{name}`, not in starter/ALLOWED_DEPS"
        );
    }
}
