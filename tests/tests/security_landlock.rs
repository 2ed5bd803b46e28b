//! Landlock in the frontend: a pull by the plain test user confines the thread that unpacks
//! layers (sandbox) and the one that packs them with tar2sqfs (SIF), and says at debug level
//! what the kernel enforced. That writes outside the allowed directories fail is shown by
//! the unit tests of `frontend/src/landlock.rs`; here the whole pull still works under it.

use apptainer_tests::{
    fixture_oci_archive, fixtures_built, installed, require, test_user_exists, user_tempdir,
    UserCmd,
};
use std::process::Command;

/// Prints the kernel's Landlock ABI version (-1 when it has none).
const LANDLOCK_ABI_C: &str = "#include <stdio.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n\
#include <linux/landlock.h>\nint main(void){printf(\"%ld\\n\",syscall(SYS_landlock_create_ruleset,\
(void*)0,0,LANDLOCK_CREATE_RULESET_VERSION));return 0;}\n";

/// The kernel's Landlock ABI, asked with the syscall itself (no LSM listing needed).
fn landlock_abi(dir: &std::path::Path) -> Option<i64> {
    let src = dir.join("abi.c");
    let bin = dir.join("abi");
    std::fs::write(&src, LANDLOCK_ABI_C).ok()?;
    let ok = Command::new("gcc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .ok()?;
    if !ok.success() {
        return None;
    }
    let out = Command::new(&bin).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The status the debug line must show for this kernel: the code asks for ABI 6 rights.
fn expected_status(abi: i64) -> &'static str {
    match abi {
        a if a >= 6 => "fully enforced",
        a if a >= 1 => "partially enforced",
        _ => "not enforced",
    }
}

#[test]
fn a_pull_reports_what_landlock_enforced_for_unpacking_and_packing() {
    require!(
        installed() && fixtures_built() && test_user_exists(),
        "installed apptainer, fixtures and the test user"
    );
    let dir = user_tempdir();
    let abi = landlock_abi(dir.path());
    require!(abi.is_some(), "gcc and the Landlock UAPI header");
    let want = expected_status(abi.unwrap());
    let src = format!(
        "oci-archive:{}",
        fixture_oci_archive("busybox", "latest").display()
    );
    let pull = |dest: &str, flags: &[&str]| {
        let dest = dir.path().join(dest);
        let mut argv = vec!["-d", "pull"];
        argv.extend_from_slice(flags);
        argv.push(dest.to_str().unwrap());
        argv.push(&src);
        let out = UserCmd::new(&argv)
            .env("APPTAINER_CACHEDIR", dir.path().join("cache"))
            .run();
        out.assert_success();
        (dest, out)
    };

    let (sandbox, out) = pull("sandbox", &["--sandbox"]);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("landlock: layer extraction: writes limited to "))
        .unwrap_or_else(|| panic!("no landlock line for the extraction: {out:?}"));
    // Only the temporary root beside the destination is writable, nothing above it.
    let parent = dir.path().display().to_string();
    let allowed = line
        .split("writes limited to ")
        .nth(1)
        .and_then(|r| r.split(": ").next())
        .unwrap();
    assert!(
        allowed.starts_with(&parent) && allowed.len() > parent.len() + 1,
        "{line}"
    );
    assert!(line.ends_with(want), "want {want:?}: {line}");
    assert!(sandbox.join("bin/busybox").is_file());

    let (sif, out) = pull("image.sif", &[]);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("landlock: squashfs packing: writes limited to "))
        .unwrap_or_else(|| panic!("no landlock line for tar2sqfs: {out:?}"));
    assert!(line.ends_with(want), "want {want:?}: {line}");
    let run = UserCmd::new(&["exec", sif.to_str().unwrap(), "cat", "/etc/os-release"]).run();
    assert!(run.stdout.contains("ID=apptainer-test"), "{run:?}");
}
