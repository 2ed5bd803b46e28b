//! `--overlay` and `--writable` on a SIF's overlay partition, end to end as the plain test
//! user: writes land in `DIR/upper` or in the ext3 image and are there in the next run, a
//! `:ro` layer refuses writes, a second `--writable` of one SIF is refused while the first
//! runs, bad requests fail with one line, and nothing stays mounted. Overlays run in a user
//! namespace (the frontend picks the unprivileged starter for them even when starter-suid is
//! installed); hostile Plans fed straight to the installed starters are refused by the
//! starters themselves, the setuid one refusing every overlay.

use apptainer_tests::launch::{action, pull_fixture_into, ready, Mode, READY};
use apptainer_tests::plans::{assert_one_fatal, run_plan_as};
use apptainer_tests::{
    account, assert_no_leftover_mounts, both_modes, mounts_snapshot, require, setuid_starter,
    starter_bin, tempdir_for, user_namespaces_available, Out, UserCmd, CLEAN_PATH, TEST_USER,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

/// A busybox SIF of the test user's, in a directory of its own.
fn busybox(dir: &TempDir) -> PathBuf {
    pull_fixture_into(
        TEST_USER,
        dir.path(),
        "busybox",
        "latest",
        "busybox.sif",
        &[],
    )
}

fn exec(mode: Mode, flags: &[&str], image: &Path, script: &str) -> Out {
    action(mode, "exec", flags, image, &["/bin/sh", "-c", script]).run()
}

fn overlay_create(args: &[&str]) {
    let mut argv = vec!["overlay", "create"];
    argv.extend_from_slice(args);
    UserCmd::new(&argv).run().assert_success();
}

fn as_user(dir: &Path, script: &str) {
    UserCmd::program("/bin/sh", &["-c", script])
        .cwd(dir)
        .run()
        .assert_success();
}

/// `e2fsck -fn` finds the image clean: fuse2fs wrote everything back before the run ended.
fn assert_ext3_clean(image: &Path, offset: u64) {
    let mut cmd = Command::new("/usr/sbin/e2fsck");
    cmd.args(["-fn"])
        .arg(format!("{}?offset={offset}", image.display()));
    if offset == 0 {
        cmd = Command::new("/usr/sbin/e2fsck");
        cmd.arg("-fn").arg(image);
    }
    let out = cmd.env("PATH", CLEAN_PATH).output().unwrap();
    assert!(
        out.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ready_for_overlays(mode: Mode) -> bool {
    ready(mode) && user_namespaces_available() && Path::new("/dev/fuse").exists()
}

fn a_directory_overlay_keeps_writes_in_its_upper_directory(mode: Mode) {
    require!(ready_for_overlays(mode), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    let ov = dir.path().join("ov");
    as_user(dir.path(), "mkdir -p ov/upper/data");
    let ov_arg = ov.to_str().unwrap();
    let before = mounts_snapshot();
    let out = exec(
        mode,
        &["--overlay", ov_arg],
        &sif,
        "echo one > /data/f && cat /data/f",
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "one", "{out:?}");
    // Fakeroot: root in the container is the caller, so the image's own directories take writes.
    exec(
        mode,
        &["--fakeroot", "--overlay", ov_arg],
        &sif,
        "echo two > /etc/two",
    )
    .assert_success();
    assert_no_leftover_mounts(&before);
    let uid = account(TEST_USER).unwrap().uid;
    for f in ["upper/data/f", "upper/etc/two"] {
        let meta = std::fs::metadata(ov.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(meta.uid(), uid, "{f} belongs to the caller");
    }
    assert!(ov.join("work").is_dir());
    let out = exec(
        mode,
        &["--overlay", &format!("{ov_arg}:ro")],
        &sif,
        "cat /data/f /etc/two",
    );
    out.assert_success();
    assert_eq!(out.stdout, "one\ntwo\n", "{out:?}");
    // Without the overlay the image is as it was.
    exec(mode, &[], &sif, "test ! -e /etc/two").assert_success();
}

fn a_read_only_overlay_refuses_writes(mode: Mode) {
    require!(ready_for_overlays(mode), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    as_user(
        dir.path(),
        "mkdir -p ov/upper/data && echo kept > ov/upper/data/f",
    );
    let ro = format!("{}:ro", dir.path().join("ov").display());
    let out = exec(
        mode,
        &["--overlay", &ro],
        &sif,
        "cat /data/f; echo x > /data/g",
    );
    assert!(!out.success(), "{out:?}");
    assert!(out.stdout.contains("kept"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!dir.path().join("ov/upper/data/g").exists());
}

fn an_ext3_overlay_image_keeps_writes(mode: Mode) {
    require!(
        ready_for_overlays(mode) && Path::new("/usr/sbin/e2fsck").exists(),
        READY
    );
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    let img = dir.path().join("ov.img");
    let img_arg = img.to_str().unwrap();
    overlay_create(&["--sparse", "--create-dir", "/data", img_arg]);
    let before = mounts_snapshot();
    exec(
        mode,
        &["--overlay", img_arg],
        &sif,
        "echo persisted > /data/f",
    )
    .assert_success();
    assert_no_leftover_mounts(&before);
    assert_ext3_clean(&img, 0);
    let ro = format!("{img_arg}:ro");
    let out = exec(
        mode,
        &["--overlay", &ro],
        &sif,
        "cat /data/f; echo x > /data/g",
    );
    assert!(out.stdout.contains("persisted"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert_no_leftover_mounts(&before);
}

fn a_fakeroot_ext3_overlay_takes_writes_anywhere(mode: Mode) {
    require!(ready_for_overlays(mode), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    let img = dir.path().join("fr.img");
    let img_arg = img.to_str().unwrap();
    overlay_create(&["--fakeroot", "--sparse", img_arg]);
    let flags = ["--fakeroot", "--overlay", img_arg];
    exec(
        mode,
        &flags,
        &sif,
        "mkdir /opt/tool && echo v1 > /opt/tool/v",
    )
    .assert_success();
    let out = exec(mode, &flags, &sif, "cat /opt/tool/v");
    assert_eq!(out.stdout.trim(), "v1", "{out:?}");
}

fn writable_keeps_writes_in_the_sif_overlay_partition(mode: Mode) {
    require!(ready_for_overlays(mode), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    overlay_create(&[
        "--size",
        "64",
        "--create-dir",
        "/data",
        sif.to_str().unwrap(),
    ]);
    let before = mounts_snapshot();
    exec(mode, &["--writable"], &sif, "echo in-sif > /data/f").assert_success();
    assert_no_leftover_mounts(&before);
    // Without --writable the partition is there read-only.
    let out = exec(mode, &[], &sif, "cat /data/f; echo x > /data/g");
    assert!(out.stdout.contains("in-sif"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    let out = exec(mode, &["--writable"], &sif, "cat /data/f");
    assert_eq!(out.stdout.trim(), "in-sif", "{out:?}");
}

/// The first container says "ready" and waits for a line on stdin; meanwhile a second
/// `--writable` of the same SIF must be refused.
fn a_second_writable_run_of_one_sif_is_refused(mode: Mode) {
    require!(ready_for_overlays(mode), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    overlay_create(&[
        "--size",
        "64",
        "--create-dir",
        "/data",
        sif.to_str().unwrap(),
    ]);
    let acct = account(TEST_USER).unwrap();
    let mut argv: Vec<&str> = vec!["exec"];
    argv.extend(mode.flag());
    argv.extend([
        "--writable",
        sif.to_str().unwrap(),
        "/bin/sh",
        "-c",
        "echo ready; read x; echo done > /data/f",
    ]);
    let mut first = Command::new("setpriv")
        .args([
            &format!("--reuid={TEST_USER}"),
            &format!("--regid={TEST_USER}"),
            "--init-groups",
            "--",
        ])
        .arg(apptainer_tests::apptainer_bin())
        .args(&argv)
        .env_clear()
        .env("HOME", &acct.home)
        .env("PATH", CLEAN_PATH)
        .current_dir(&acct.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let second = exec(mode, &["--writable"], &sif, "echo second > /data/f");
    second.assert_one_error("in use by another container");
    first.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(first.wait().unwrap().success());
    let out = exec(mode, &[], &sif, "cat /data/f");
    assert_eq!(out.stdout.trim(), "done", "{out:?}");
}

fn bad_overlay_requests_fail_with_one_line(mode: Mode) {
    require!(ready_for_overlays(mode), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    as_user(dir.path(), "mkdir a b && echo hello > junk");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let before = mounts_snapshot();
    exec(mode, &["--overlay", &p("missing")], &sif, "true").assert_one_error("missing");
    exec(mode, &["--overlay", &p("junk")], &sif, "true")
        .assert_one_error("not a directory, an ext3 image or a squashfs image");
    exec(
        mode,
        &["--overlay", &p("a"), "--writable-tmpfs"],
        &sif,
        "true",
    )
    .assert_one_error("--writable-tmpfs");
    exec(
        mode,
        &["--overlay", &p("a"), "--overlay", &p("b")],
        &sif,
        "true",
    )
    .assert_one_error("more than one writable overlay");
    exec(mode, &["--writable"], &sif, "true")
        .assert_one_error("no SIF writable overlay partition found");
    exec(mode, &["--overlay", "/var/tmp"], &sif, "true").assert_one_error("must be owned by you");
    assert_no_leftover_mounts(&before);
}

both_modes!(
    a_directory_overlay_keeps_writes_in_its_upper_directory,
    a_read_only_overlay_refuses_writes,
    an_ext3_overlay_image_keeps_writes,
    a_fakeroot_ext3_overlay_takes_writes_anywhere,
    writable_keeps_writes_in_the_sif_overlay_partition,
    a_second_writable_run_of_one_sif_is_refused,
    bad_overlay_requests_fail_with_one_line,
);

/// The Plan the frontend sends for a user-owned directory overlay (from `--debug`).
fn frontend_plan(sif: &Path, ov: &Path) -> Value {
    let out = UserCmd::new(&[
        "--debug",
        "exec",
        "--overlay",
        ov.to_str().unwrap(),
        sif.to_str().unwrap(),
        "/bin/true",
    ])
    .run();
    out.assert_success();
    let json = out
        .stderr
        .lines()
        .find_map(|l| l.split_once("launch plan: ").map(|(_, j)| j.to_string()))
        .unwrap_or_else(|| panic!("no plan in {out:?}"));
    serde_json::from_str(&json).unwrap()
}

/// Feeds `plan` on fd 3 to `starter` as the test user.
fn run_plan(starter: &Path, plan: &Value) -> Out {
    run_plan_as(TEST_USER, starter, plan)
}

#[track_caller]
fn assert_refused(starter: &Path, plan: &Value, needle: &str) {
    let before = mounts_snapshot();
    assert_one_fatal(&run_plan(starter, plan), needle);
    assert_no_leftover_mounts(&before);
}

fn set_overlay(plan: &Value, path: &Path, writable: bool) -> Value {
    let mut p = plan.clone();
    p["overlays"] = serde_json::json!([{ "path": path, "writable": writable }]);
    p
}

#[test]
fn the_user_namespace_starter_refuses_layers_the_caller_may_not_write() {
    require!(ready_for_overlays(Mode::Userns), READY);
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    as_user(dir.path(), "mkdir ov");
    let plan = frontend_plan(&sif, &dir.path().join("ov"));
    let starter = starter_bin();
    // A directory of root's (the caller can read it, not own it) as the writable layer.
    let root_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(
        root_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_refused(
        &starter,
        &set_overlay(&plan, root_dir.path(), true),
        "must be the caller's",
    );
    // An ext3 image of root's, readable by all, as the writable layer.
    let img = root_dir.path().join("root.img");
    let mkfs = Command::new("/usr/sbin/mkfs.ext3")
        .args(["-q", "-F"])
        .arg(&img)
        .arg("4M")
        .output()
        .unwrap();
    assert!(mkfs.status.success(), "{mkfs:?}");
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert_refused(&starter, &set_overlay(&plan, &img, true), "read-write");
    // A second writable layer besides a writable tmpfs.
    let mut both = plan.clone();
    both["writable_tmpfs"] = Value::Bool(true);
    assert_refused(&starter, &both, "writable");
}

#[test]
fn the_setuid_starter_refuses_every_overlay() {
    require!(ready_for_overlays(Mode::Setuid), READY);
    let Some(suid) = setuid_starter() else { return };
    let dir = tempdir_for(TEST_USER);
    let sif = busybox(&dir);
    as_user(dir.path(), "mkdir ov");
    let mut plan = frontend_plan(&sif, &dir.path().join("ov"));
    plan["namespaces"]["user"] = Value::Bool(false);
    assert_refused(&suid, &plan, "user-namespace mode");
    let mut ro = set_overlay(&plan, &dir.path().join("ov"), false);
    ro["namespaces"]["user"] = Value::Bool(false);
    assert_refused(&suid, &ro, "user-namespace mode");
}
