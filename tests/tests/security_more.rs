//! Attacks from SECURITY.md's table whose protection is the shape of the launch request
//! (Plan) itself: mount options slipped into a bind (T16) and namespaces to join given by
//! path (T30). Neither has a field in a Plan, so the starter must refuse any Plan that
//! carries one rather than ignore it. Each case is sent straight to the installed starter
//! (fd 3) by the plain test user, next to a control: the same Plan without the extra field
//! runs, so the refusal is due to that field alone. Nothing may be left mounted.

use apptainer_tests::launch::{pull_fixture, ready, Mode, PulledImage, READY};
use apptainer_tests::plans::{assert_one_fatal, run_plan_as};
use apptainer_tests::{
    assert_no_leftover_mounts, mounts_snapshot, require, serial, setuid_starter, starter_bin, Out,
    TEST_USER,
};
use serde_json::{json, Value};
use std::path::PathBuf;

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
