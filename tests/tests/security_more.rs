//! Attacks from SECURITY.md's table whose protection is the shape of the launch request
//! (Plan) itself: mount options slipped into a bind (T16) and namespaces to join given by
//! path (T30). Neither has a field in a Plan, so the starter must refuse any Plan that
//! carries one rather than ignore it. Each case is sent straight to the installed starter
//! (fd 3) by the plain test user, next to a control: the same Plan without the extra field
//! runs, so the refusal is due to that field alone. Nothing may be left mounted.
//!
//! Also mount propagation (T17): a container started in a mount namespace whose mounts are
//! all shared, as systemd makes the host's, must add nothing to that namespace's mount
//! table, neither while it runs nor after.

use apptainer_tests::launch::{pull_fixture, ready, Mode, PulledImage, READY};
use apptainer_tests::plans::{assert_one_fatal, run_plan_as};
use apptainer_tests::{
    assert_no_leftover_mounts, mounts_snapshot, require, serial, setuid_starter, starter_bin, Out,
    TEST_USER,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The installed starter for `mode`.
fn starter(mode: Mode) -> PathBuf {
    match mode {
        Mode::Setuid => setuid_starter().expect("ready() checked it"),
        Mode::Userns => starter_bin(),
    }
}

/// A valid Plan for `mode` that runs `script` in `img`, with a read-only user bind of a
/// directory of the caller onto /mnt.
fn plan(mode: Mode, img: &PulledImage, script: &str) -> Value {
    json!({
        "version": 1,
        "image": { "path": img.sif, "kind": "sif", "writable": false },
        "namespaces": { "user": mode == Mode::Userns, "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": [
            "proc", { "dev": { "minimal": true } },
            { "bind": { "src": img.dir.path(), "dst": "/mnt", "read_only": true, "kind": "user" } }
        ],
        "writable_tmpfs": false,
        "fakeroot": false,
        "process": { "argv": ["/bin/sh", "-c", script], "env": ["PATH=/bin:/usr/bin"], "cwd": "/" }
    })
}

/// Runs the starter for `mode` as the test user with `plan` on fd 3.
fn run_plan(mode: Mode, plan: &Value) -> Out {
    run_plan_as(TEST_USER, &starter(mode), plan)
}

/// Asserts a refusal: exit 255, one `FATAL:` line naming `needle`, no output, nothing
/// left mounted.
#[track_caller]
fn assert_refused(mode: Mode, plan: &Value, needle: &str) {
    let before = mounts_snapshot();
    assert_one_fatal(&run_plan(mode, plan), needle);
    assert_no_leftover_mounts(&before);
}

/// The control: `p` runs and its bind of /mnt is read-only, `nosuid` and `nodev`.
#[track_caller]
fn assert_runs_confined(mode: Mode, p: &Value) {
    let out = run_plan(mode, p);
    assert!(
        out.success(),
        "{mode:?}: the control plan must run: {out:?}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/mnt"))
        .unwrap_or_else(|| panic!("{mode:?}: no /mnt mount: {out:?}"));
    let opts: Vec<&str> = line.split_whitespace().nth(5).unwrap().split(',').collect();
    for o in ["ro", "nosuid", "nodev"] {
        assert!(opts.contains(&o), "{mode:?}: /mnt lacks {o}: {line}");
    }
}

/// Sets `v` at the JSON pointer `parent` + `/` + `key`, creating the key.
fn with_field(mut p: Value, parent: &str, key: &str, v: Value) -> Value {
    p.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent:?}"))
        .insert(key.to_owned(), v);
    p
}

fn mount_options_cannot_be_injected_through_a_bind(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = pull_fixture(TEST_USER, "entrypoint", "none");
    let p = plan(mode, &img, "grep ' /mnt ' /proc/self/mountinfo");
    assert_runs_confined(mode, &p);
    // Options as a string (mount(8) style), as flags, and a remount request.
    for (key, v) in [
        ("options", json!("rw,suid,dev,exec")),
        ("flags", json!(0)),
        ("data", json!("uid=0")),
        ("remount", json!(true)),
    ] {
        let bad = with_field(p.clone(), "/mounts/2/bind", key, v);
        assert_refused(mode, &bad, "unknown field");
    }
    // A mount of a filesystem type of the caller's choice does not exist either.
    let mut bad = p.clone();
    bad["mounts"].as_array_mut().unwrap().push(json!({
        "mount": { "fstype": "ext4", "src": img.sif, "dst": "/srv", "options": "suid,dev" }
    }));
    assert_refused(mode, &bad, "unknown variant");
}

#[test]
fn the_setuid_starter_refuses_mount_options_in_a_plan_bind() {
    mount_options_cannot_be_injected_through_a_bind(Mode::Setuid);
}

#[test]
fn the_user_namespace_starter_refuses_mount_options_in_a_plan_bind() {
    mount_options_cannot_be_injected_through_a_bind(Mode::Userns);
}

fn namespaces_to_join_cannot_be_named_in_a_plan(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = pull_fixture(TEST_USER, "entrypoint", "none");
    let p = plan(mode, &img, "grep ' /mnt ' /proc/self/mountinfo");
    assert_runs_confined(mode, &p);
    // PID 1's namespaces: those of the host, which the caller must not enter through the
    // starter. Given as extra keys of `namespaces`, and as a top-level request.
    for key in ["net_path", "mnt_path", "join"] {
        let bad = with_field(p.clone(), "/namespaces", key, json!("/proc/1/ns/mnt"));
        assert_refused(mode, &bad, "unknown field");
    }
    for key in ["join_namespaces", "setns", "join_instance"] {
        let bad = with_field(p.clone(), "", key, json!({ "mnt": "/proc/1/ns/mnt" }));
        assert_refused(mode, &bad, "unknown field");
    }
    // A path where a boolean belongs.
    let mut bad = p.clone();
    bad["namespaces"]["net"] = json!("/proc/1/ns/net");
    assert_refused(mode, &bad, "invalid type");
}

#[test]
fn the_setuid_starter_refuses_namespaces_to_join_in_a_plan() {
    namespaces_to_join_cannot_be_named_in_a_plan(Mode::Setuid);
}

#[test]
fn the_user_namespace_starter_refuses_namespaces_to_join_in_a_plan() {
    namespaces_to_join_cannot_be_named_in_a_plan(Mode::Userns);
}

/// Run by root in a new mount namespace made all shared (`unshare --propagation shared`),
/// standing for a systemd host: snapshots its mountinfo, starts the container as the test
/// user with a bind of a root-owned directory and a second bind of the user's own directory
/// inside the first, snapshots again once the container has read through both binds (it
/// then waits for `go`), and a last time after it exited.
const PROPAGATION_SCRIPT: &str = r#"
app=$1 flag=$2 sif=$3 host=$4 src=$5 dir=$6
cat /proc/self/mountinfo > "$dir/before"
setpriv --reuid=apptest --regid=apptest --init-groups env -i PATH=/usr/bin:/bin HOME=/home/apptest \
  "$app" exec $flag -B "$dir" -B "$host:/mnt/h" -B "$src:/mnt/h/target" "$sif" \
  sh -c 'cat /mnt/h/target/file > "$0/seen"; while [ ! -e "$0/go" ]; do sleep 0.1; done' "$dir" &
pid=$!
while [ ! -e "$dir/seen" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
cat /proc/self/mountinfo > "$dir/during"
touch "$dir/go"
wait "$pid"
echo "exit=$?"
cat /proc/self/mountinfo > "$dir/after"
"#;

/// The lines of `dir/name` that `dir/before` does not have.
fn new_mounts(dir: &Path, name: &str) -> Vec<String> {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    let before: BTreeSet<String> = read("before").lines().map(str::to_owned).collect();
    read(name)
        .lines()
        .filter(|l| !before.contains(*l))
        .map(str::to_owned)
        .collect()
}

fn container_mounts_do_not_propagate_to_a_shared_host(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = pull_fixture(TEST_USER, "busybox", "latest");
    let dir = img.dir.path();
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), "the user's\n").unwrap();
    let acct = apptainer_tests::test_account();
    for p in [&src, &src.join("file")] {
        std::os::unix::fs::chown(p, Some(acct.uid), Some(acct.gid)).unwrap();
    }
    // A root-owned host directory the user may read but not change.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(host.path().join("target")).unwrap();
    std::fs::write(host.path().join("target/file"), "the host's\n").unwrap();
    std::fs::set_permissions(
        host.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let real_host = mounts_snapshot();
    let app = apptainer_tests::apptainer_bin();
    // Output to files, not pipes: a FUSE daemon a failed run leaves behind must not keep
    // the test waiting for the end of a pipe.
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let status = Command::new("timeout")
        .args(["600", "unshare", "--mount", "--propagation", "shared", "--"])
        .args(["sh", "-c", PROPAGATION_SCRIPT, "sh"])
        .arg(&app)
        .arg(mode.flag().unwrap_or(""))
        .args([&img.sif, host.path(), &src, dir])
        .stdin(std::process::Stdio::null())
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .status()
        .unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    assert!(status.success(), "{mode:?}: {status}: {stdout}{stderr}");
    let during = new_mounts(dir, "during");
    let after = new_mounts(dir, "after");
    assert!(
        during.is_empty(),
        "{mode:?}: mounts of the running container appeared in the shared namespace: {during:#?}\n{stderr}"
    );
    assert!(
        after.is_empty(),
        "{mode:?}: mounts left in the shared namespace after the container exited: {after:#?}"
    );
    // The attack was tried: the container read the user's file through both binds.
    assert_eq!(
        std::fs::read_to_string(dir.join("seen")).ok().as_deref(),
        Some("the user's\n"),
        "{mode:?}: {stdout}{stderr}"
    );
    assert!(stdout.contains("exit=0"), "{mode:?}: {stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("target/file")).unwrap(),
        "the host's\n"
    );
    assert_no_leftover_mounts(&real_host);
}

#[test]
fn the_setuid_starter_does_not_propagate_mounts_to_a_shared_host() {
    container_mounts_do_not_propagate_to_a_shared_host(Mode::Setuid);
}

#[test]
fn the_user_namespace_starter_does_not_propagate_mounts_to_a_shared_host() {
    container_mounts_do_not_propagate_to_a_shared_host(Mode::Userns);
}
