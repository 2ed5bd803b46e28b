//! Landlock in the frontend: a pull by the plain test user confines the thread that unpacks
//! layers (sandbox) and the one that packs them with tar2sqfs (SIF), and a definition-file
//! build confines its host-side steps (unpacking the base image, copying `%files`, packing
//! with mksquashfs); each says at debug level what the kernel enforced. That writes outside
//! the allowed directories fail is shown by the unit tests of `frontend/src/landlock.rs`;
//! here the whole pull or build still works under it.

use apptainer_tests::{
    account, fixture_oci_archive, fixtures_built, installed, require, tempdir_for,
    test_user_exists, user_tempdir, UserCmd, TEST_USER, TEST_USER2,
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

/// The directory the debug line `landlock: WHAT: writes limited to DIR: STATUS` of `what`
/// names, and its status.
fn landlock_line<'a>(stderr: &'a str, what: &str) -> Option<(&'a str, &'a str)> {
    let prefix = format!("landlock: {what}: writes limited to ");
    let line = stderr.lines().find(|l| l.contains(&prefix))?;
    line.split(&prefix).nth(1)?.split_once(": ")
}

#[test]
fn a_build_reports_what_landlock_enforced_for_its_host_side_steps() {
    require!(
        installed() && fixtures_built() && account(TEST_USER2).is_some(),
        "installed apptainer, fixtures and the second test user (no subordinate ids)"
    );
    let dir = tempdir_for(TEST_USER2);
    let abi = landlock_abi(dir.path());
    require!(abi.is_some(), "gcc and the Landlock UAPI header");
    let want = expected_status(abi.unwrap());
    let d = dir.path();
    let host_file = d.join("host.txt");
    std::fs::write(&host_file, "from the host\n").unwrap();
    let def = d.join("image.def");
    std::fs::write(
        &def,
        format!(
            "Bootstrap: oci-archive\nFrom: {}\n\n%files\n    {} /opt/from-host.txt\n",
            fixture_oci_archive("busybox", "latest").display(),
            host_file.display()
        ),
    )
    .unwrap();
    let tmp = d.join("tmp");
    let acct = account(TEST_USER2).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    for p in [&tmp, &host_file, &def] {
        std::os::unix::fs::chown(p, Some(acct.uid), Some(acct.gid)).unwrap();
    }
    let sif = d.join("out.sif");
    // A user without a subordinate range: every host-side step runs as the caller itself,
    // so each can be confined.
    let out = UserCmd::new(&["-d", "build", sif.to_str().unwrap(), def.to_str().unwrap()])
        .user(TEST_USER2)
        .cwd(d)
        .env("APPTAINER_CACHEDIR", d.join("cache"))
        .env("APPTAINER_TMPDIR", &tmp)
        .run();
    out.assert_success();
    let workspace = format!("{}/build-temp-", tmp.display());
    for (what, below) in [
        ("build bootstrap extraction", "/stage-0"),
        ("build %files copy", "/stage-0/rootfs"),
        ("build squashfs packing", ""),
    ] {
        let (allowed, status) = landlock_line(&out.stderr, what)
            .unwrap_or_else(|| panic!("no landlock line for {what}: {out:?}"));
        // Only the build's own temporary tree (the stage, its root) is writable.
        assert!(
            allowed.starts_with(&workspace) && allowed.ends_with(below),
            "{what}: {allowed}"
        );
        assert!(!allowed.contains(", "), "{what}: one directory: {allowed}");
        assert_eq!(status, want, "{what}");
    }
    let run = UserCmd::new(&["exec", sif.to_str().unwrap(), "cat", "/opt/from-host.txt"])
        .user(TEST_USER2)
        .run();
    assert_eq!(run.stdout, "from the host\n", "{run:?}");

    // With a subordinate range the base image is unpacked inside the fakeroot mapping,
    // through the setuid newuidmap, which Landlock's no_new_privs would disable: the build
    // says so instead of confining it.
    if !test_user_exists() {
        return;
    }
    let dir = tempdir_for(TEST_USER);
    let def = dir.path().join("image.def");
    let from = fixture_oci_archive("busybox", "latest");
    std::fs::write(
        &def,
        format!("Bootstrap: oci-archive\nFrom: {}\n", from.display()),
    )
    .unwrap();
    let out = dir.path().join("out.sif");
    let out = UserCmd::new(&["-d", "build", out.to_str().unwrap(), def.to_str().unwrap()])
        .cwd(dir.path())
        .env("APPTAINER_CACHEDIR", dir.path().join("cache"))
        .run();
    out.assert_success();
    for what in ["build bootstrap extraction", "build squashfs packing"] {
        let line = format!(
            "landlock: {what}: not applied: runs in the fakeroot mapping, which needs the setuid newuidmap"
        );
        assert!(out.stderr.contains(&line), "{line}: {out:?}");
    }
}
