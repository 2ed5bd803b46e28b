//! Real root's containers run privileged, as the reference's do: no user namespace (unless
//! root asks for one with `--userns` or `--fakeroot`), the host's ids, kernel mounts and
//! root's capabilities. So root sees other users' files with their real owners, enters
//! their private directories, and a root build's `%post` can change ids and groups (what
//! package managers do). Plain users are unaffected: the two-mode suites cover them, and
//! the last test checks their user namespace is still there.

use apptainer_tests::launch::{action, pull_fixture, ready, Mode, PulledImage, READY};
use apptainer_tests::{
    assert_no_leftover_mounts, is_root, mounts_snapshot, registry_up, require, serial, tempdir_for,
    test_account, user_tempdir, Out, UserCmd, REGISTRY, TEST_USER,
};
use std::os::unix::fs::PermissionsExt;

/// What every test here needs.
const WHY: &str = "root, installed apptainer, test user and fixtures";

fn root_ready() -> bool {
    is_root() && ready(Mode::Userns)
}

fn image() -> PulledImage {
    pull_fixture(TEST_USER, "busybox", "latest")
}

/// `apptainer exec [flags] IMAGE sh -c script` as root.
fn root_sh(flags: &[&str], img: &PulledImage, script: &str) -> Out {
    let mut argv = vec!["exec"];
    argv.extend_from_slice(flags);
    argv.extend([img.arg(), "sh", "-c", script]);
    UserCmd::new(&argv).root().run()
}

/// The whitespace-separated fields of a uid_map.
fn fields(map: &str) -> Vec<&str> {
    map.split_whitespace().collect()
}

/// A capability set of this (root) test process, from /proc/self/status.
fn own_caps(name: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap();
    line.trim().to_string()
}

#[test]
fn roots_container_is_in_the_initial_user_namespace_with_roots_capabilities() {
    let _guard = serial();
    require!(root_ready(), WHY);
    let img = image();
    let before = mounts_snapshot();
    let out = root_sh(
        &[],
        &img,
        "cat /proc/self/uid_map; id -u; grep CapBnd /proc/self/status",
    );
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(fields(lines[0]), ["0", "0", "4294967295"], "{out:?}");
    assert_eq!(lines[1], "0", "{out:?}");
    // `root default capabilities = full` (the installed conf's) leaves root's own bounding
    // set, which may lack some the kernel has (as in a container).
    assert_eq!(
        lines[2].split_whitespace().nth(1),
        Some(own_caps("CapBnd").as_str()),
        "{out:?}"
    );
    // Asking for a user namespace still gets one that maps only root.
    let out = root_sh(&["--userns"], &img, "cat /proc/self/uid_map");
    out.assert_success();
    assert_eq!(fields(&out.stdout), ["0", "0", "1"], "{out:?}");
    assert_no_leftover_mounts(&before);
}

#[test]
fn root_sees_the_host_owners_of_other_users_files_and_enters_their_private_directories() {
    let _guard = serial();
    require!(root_ready(), WHY);
    let img = image();
    let acct = test_account();
    // The test user's own 0700 directory, holding a 0600 file of its own.
    let private = user_tempdir();
    let file = private.path().join("secret");
    std::fs::write(&file, "the user's secret\n").unwrap();
    std::os::unix::fs::chown(&file, Some(acct.uid), Some(acct.gid)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mode = std::fs::metadata(private.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let before = mounts_snapshot();
    let bind = format!("{}:/private", private.path().display());
    let out = root_sh(
        &["--bind", &bind],
        &img,
        "stat -c '%u:%g %a' /private /private/secret; cat /private/secret",
    );
    out.assert_success();
    let ids = format!("{}:{}", acct.uid, acct.gid);
    assert_eq!(
        out.stdout,
        format!("{ids} 700\n{ids} 600\nthe user's secret\n"),
        "{out:?}"
    );
    // Root's own supplementary groups reach the container as they are.
    let out = root_sh(&[], &img, "grep ^Groups: /proc/self/status");
    out.assert_success();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let host = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(out.stdout.trim_end(), host.trim_end(), "{out:?}");
    assert_no_leftover_mounts(&before);
}

#[test]
fn a_root_build_post_changes_owners_and_groups_and_switches_users() {
    let _guard = serial();
    require!(root_ready() && registry_up(), WHY);
    let tmp = tempdir_for(TEST_USER);
    let dir = tmp.path();
    let def = dir.join("root.def");
    // su calls setgroups, which a user namespace mapping only root refuses (apt switching
    // to its sandbox user needs the same).
    std::fs::write(
        &def,
        format!(
            "Bootstrap: docker\nFrom: {REGISTRY}/test/busybox:latest\n\n%post\n    \
             touch /f && chown 1001:1002 /f && ls -ln /f > /f.ls\n    \
             su -s /bin/sh nobody -c 'id -u; id -G' > /ids\n    \
             cat /proc/self/uid_map > /post-uid-map\n"
        ),
    )
    .unwrap();
    let sif = dir.join("root.sif");
    let before = mounts_snapshot();
    let out = UserCmd::new(&["build", sif.to_str().unwrap(), def.to_str().unwrap()])
        .root()
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .env("APPTAINER_NOHTTPS", "1")
        .run();
    out.assert_success();
    assert_no_leftover_mounts(&before);
    let inside = root_sh(
        &[],
        &PulledImage { dir: tmp, sif },
        "stat -c '%u:%g' /f; cat /ids; cat /post-uid-map",
    );
    inside.assert_success();
    let lines: Vec<&str> = inside.stdout.lines().collect();
    assert_eq!(lines[..3], ["1001:1002", "65534", "65534"], "{inside:?}");
    assert_eq!(fields(lines[3]), ["0", "0", "4294967295"], "{inside:?}");
    assert_no_leftover_mounts(&before);
}

#[test]
fn roots_instance_runs_privileged_and_its_exec_joins_it() {
    let _guard = serial();
    require!(root_ready(), WHY);
    let img = image();
    let config = tempdir_for(TEST_USER);
    let root_cmd = |args: &[&str]| {
        UserCmd::new(args)
            .root()
            .env("APPTAINER_CONFIGDIR", config.path())
            .run()
    };
    let before = mounts_snapshot();
    root_cmd(&["instance", "start", img.arg(), "rootinst"]).assert_success();
    // The instance's init pid, second column of `instance list`.
    let list = root_cmd(&["instance", "list"]);
    let pid = list
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rootinst"))
        .and_then(|rest| rest.split_whitespace().next().map(str::to_string));
    let init_mnt = pid.and_then(|p| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok());
    let script =
        "cat /proc/self/uid_map; grep CapEff /proc/self/status; readlink /proc/self/ns/mnt";
    let out = root_cmd(&["exec", "instance://rootinst", "sh", "-c", script]);
    let stop = root_cmd(&["instance", "stop", "rootinst"]);
    out.assert_success();
    stop.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(fields(lines[0]), ["0", "0", "4294967295"], "{out:?}");
    assert_eq!(
        lines[1].split_whitespace().nth(1),
        Some(own_caps("CapBnd").as_str()),
        "{out:?}"
    );
    let init_mnt = init_mnt.unwrap_or_else(|| panic!("no init pid in {list:?}"));
    assert_eq!(Some(lines[2]), init_mnt.to_str(), "{out:?}");
    assert_no_leftover_mounts(&before);
}

/// The plain user's containers keep their user namespace (or the setuid starter's drop):
/// never the caller's root powers, never root's ids.
fn a_plain_user_is_unaffected(mode: Mode) {
    let _guard = serial();
    require!(ready(mode), READY);
    let img = image();
    let uid = test_account().uid.to_string();
    let out = action(
        mode,
        "exec",
        &[],
        &img.sif,
        &[
            "sh",
            "-c",
            "id -u; grep CapEff /proc/self/status; cat /proc/self/uid_map",
        ],
    )
    .run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], uid, "{out:?}");
    assert_eq!(fields(lines[1]), ["CapEff:", "0000000000000000"], "{out:?}");
    let map = fields(lines[2]);
    match mode {
        Mode::Setuid => assert_eq!(map, ["0", "0", "4294967295"], "{out:?}"),
        Mode::Userns => assert_eq!(map, [uid.as_str(), uid.as_str(), "1"], "{out:?}"),
    }
}

apptainer_tests::both_modes!(a_plain_user_is_unaffected);
