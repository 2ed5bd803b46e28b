//! `--keep-privs`, `--no-privs`, `--add-caps` and `--drop-caps` end to end. Root's container
//! gets `root default capabilities` of the installed apptainer.conf, all of them with
//! `--keep-privs`, none with `--no-privs`, then `--add-caps`, less `--drop-caps`, in every
//! set (bounding, permitted, effective, inheritable, ambient). A plain user never keeps or
//! gains one: not through the frontend, and not by handing the starter a Plan of its own.
//! Root always runs the non-setuid starter (a setuid binary run by root is not AT_SECURE),
//! so the root tests have one mode; the user tests run in both.

use apptainer_tests::launch::{action, pull_fixture, ready, Mode, PulledImage, READY};
use apptainer_tests::{
    assert_no_leftover_mounts, mounts_snapshot, require, serial, Out, UserCmd, TEST_USER,
};
use std::path::Path;

const SETS: [&str; 5] = ["CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"];

fn image() -> PulledImage {
    pull_fixture(TEST_USER, "entrypoint", "none")
}

/// The five capability masks the container process reports, in the order of `SETS`.
fn container_caps(out: &Out) -> [u64; 5] {
    assert!(out.success(), "{out:?}");
    SETS.map(|name| {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name}: {out:?}"));
        u64::from_str_radix(line[name.len() + 1..].trim(), 16).unwrap()
    })
}

/// `apptainer exec [flags] IMAGE grep ^Cap /proc/self/status`, as root or as the test user.
fn run_caps(as_root: bool, mode: Mode, flags: &[&str], img: &PulledImage) -> Out {
    let cmd = action(
        mode,
        "exec",
        flags,
        &img.sif,
        &["grep", "^Cap", "/proc/self/status"],
    );
    if as_root {
        cmd.root().run()
    } else {
        cmd.run()
    }
}

/// Every capability this kernel has (root of a new user namespace starts with all of them,
/// whatever the bounding set of its creator).
fn kernel_caps() -> u64 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (1u64 << (last + 1)) - 1
}

/// `root default capabilities` of the installed apptainer.conf (`full` when unset).
fn root_default() -> String {
    let text = std::fs::read_to_string(apptainer_tests::conf_path()).unwrap();
    let value = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("root default capabilities")?
            .split_once('=')
    });
    value.map_or("full".into(), |(_, v)| v.trim().to_string())
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_RAW: u64 = 1 << 13;

#[test]
fn root_gets_the_configured_default_and_every_capability_with_keep_privs() {
    let _guard = serial();
    require!(ready(Mode::Userns), READY);
    let img = image();
    let before = mounts_snapshot();
    let all = kernel_caps();
    let default = if root_default() == "full" { all } else { 0 };
    assert_eq!(
        container_caps(&run_caps(true, Mode::Userns, &[], &img)),
        [default; 5]
    );
    let kept = container_caps(&run_caps(true, Mode::Userns, &["--keep-privs"], &img));
    assert_eq!(kept, [all; 5]);
    assert_ne!(kept[2], 0, "CapEff with --keep-privs");
    assert_no_leftover_mounts(&before);
}

#[test]
fn root_drop_caps_removes_exactly_the_named_capability_and_no_privs_removes_all() {
    let _guard = serial();
    require!(ready(Mode::Userns), READY);
    let img = image();
    let before = mounts_snapshot();
    let all = kernel_caps();
    for flags in [
        ["--keep-privs", "--drop-caps", "CAP_NET_RAW"],
        ["--keep-privs", "--drop-caps", "net_raw"],
    ] {
        let caps = container_caps(&run_caps(true, Mode::Userns, &flags, &img));
        assert_eq!(caps, [all & !CAP_NET_RAW; 5], "{flags:?}");
    }
    assert_eq!(
        container_caps(&run_caps(true, Mode::Userns, &["--no-privs"], &img)),
        [0; 5]
    );
    let only_chown = run_caps(
        true,
        Mode::Userns,
        &["--no-privs", "--add-caps", "chown"],
        &img,
    );
    assert_eq!(container_caps(&only_chown), [CAP_CHOWN; 5]);
    // What is left is real: with CAP_DAC_OVERRIDE alone root reads its own mode-000 file,
    // without it not.
    let script =
        "f=$(mktemp) && echo secret >\"$f\" && chmod 000 \"$f\" && cat \"$f\"; rm -f \"$f\"";
    let read = |flags: &[&str]| {
        action(Mode::Userns, "exec", flags, &img.sif, &["sh", "-c", script])
            .root()
            .run()
    };
    let out = read(&["--no-privs", "--add-caps", "dac_override"]);
    assert_eq!(out.stdout, "secret\n", "{out:?}");
    let out = read(&["--no-privs"]);
    assert!(
        out.stdout.is_empty() && out.stderr.contains("Permission denied"),
        "{out:?}"
    );
    assert_no_leftover_mounts(&before);
}

fn a_user_gets_no_capability_from_add_caps_and_keep_privs_is_refused(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let before = mounts_snapshot();
    let out = run_caps(false, mode, &["--add-caps", "CAP_CHOWN,net_raw"], &img);
    assert_eq!(container_caps(&out), [0; 5]);
    assert!(
        out.stderr
            .contains("not authorized to add capability: CAP_CHOWN,CAP_NET_RAW"),
        "{out:?}"
    );
    let out = run_caps(false, mode, &["--keep-privs"], &img);
    assert_eq!(out.code(), 255, "{out:?}");
    assert!(
        out.stderr.contains("--keep-privs requires root privileges") && out.stdout.is_empty(),
        "{out:?}"
    );
    assert_eq!(
        container_caps(&run_caps(
            false,
            mode,
            &["--drop-caps", "all", "--no-privs"],
            &img
        )),
        [0; 5]
    );
    assert_no_leftover_mounts(&before);
}

/// A Plan written by the user itself, asking for capabilities, given to the starter on fd 3.
fn a_users_own_plan_asking_for_capabilities_is_refused_by_the_starter(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let starter = match mode {
        Mode::Setuid => apptainer_tests::starter_suid_bin(),
        Mode::Userns => apptainer_tests::starter_bin(),
    };
    let before = mounts_snapshot();
    let requests = [
        serde_json::json!({ "keep_privs": true, "no_privs": false, "add": [], "drop": [] }),
        serde_json::json!({ "keep_privs": false, "no_privs": false, "add": ["CAP_SYS_ADMIN"], "drop": [] }),
        serde_json::json!({ "keep_privs": false, "no_privs": false, "add": ["CAP_ALL"], "drop": [] }),
    ];
    for caps in requests {
        let plan = serde_json::json!({
            "version": 1,
            "image": { "path": img.sif, "kind": "sif", "writable": false },
            "namespaces": { "user": mode == Mode::Userns, "pid": false, "ipc": false, "uts": false, "net": false },
            "hostname": null,
            "mounts": ["proc"],
            "writable_tmpfs": false,
            "fakeroot": false,
            "capabilities": caps,
            "process": { "argv": ["/bin/grep", "^Cap", "/proc/self/status"], "env": ["PATH=/bin"], "cwd": "/" }
        });
        let file = img.dir.path().join("caps-plan.json");
        std::fs::write(&file, serde_json::to_vec(&plan).unwrap()).unwrap();
        let out = run_with_plan(&starter, &file);
        assert_eq!(out.code(), 255, "{caps}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{caps}: {out:?}");
        assert!(
            lines[0].starts_with("FATAL:   ") && lines[0].contains("root only"),
            "{caps}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{caps}: {out:?}");
    }
    assert_no_leftover_mounts(&before);
}

/// Runs `starter` as the test user with `plan` on fd 3.
fn run_with_plan(starter: &Path, plan: &Path) -> Out {
    let script = "exec \"$0\" 3<\"$1\"";
    UserCmd::program(
        "/bin/sh",
        &[
            "-c",
            script,
            starter.to_str().unwrap(),
            plan.to_str().unwrap(),
        ],
    )
    .run()
}

apptainer_tests::both_modes!(
    a_user_gets_no_capability_from_add_caps_and_keep_privs_is_refused,
    a_users_own_plan_asking_for_capabilities_is_refused_by_the_starter,
);
