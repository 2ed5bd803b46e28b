//! `apptainer exec` as the plain test user, in setuid mode and with `--userns`: exit codes
//! pass through, the process has the caller's uid, $HOME and the current directory are
//! bound, `--bind` works read-write and read-only, a missing bind source is one clear error,
//! and the environment follows the documented rules (APPTAINERENV_, image ENV over host ENV,
//! `--cleanenv`).

use apptainer_tests::launch::{action, pull_fixture, ready, Mode, PulledImage, READY};
use apptainer_tests::{
    installed, require, tempdir_for, test_account, test_user_exists, Out, TempDir, UserCmd,
    TEST_USER,
};
use std::path::Path;

/// A SIF of the `entrypoint:none` fixture (busybox; ENV JAVA_HOME=/opt/java, ...), pulled
/// by the test user into a directory of its own.
fn pull() -> PulledImage {
    pull_fixture(TEST_USER, "entrypoint", "none")
}

/// `apptainer exec [--userns] FLAGS... SIF COMMAND...` as the test user.
fn exec(mode: Mode, flags: &[&str], img: &PulledImage, command: &[&str]) -> UserCmd {
    action(mode, "exec", flags, &img.sif, command)
}

fn sh(mode: Mode, img: &PulledImage, script: &str) -> UserCmd {
    exec(mode, &[], img, &["/bin/sh", "-c", script])
}

fn stdout(out: &Out) -> &str {
    out.assert_success();
    out.stdout.trim_end()
}

fn true_succeeds_and_exit_codes_pass_through(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    exec(mode, &[], &img, &["/bin/true"]).run().assert_success();
    let out = sh(mode, &img, "exit 3").run();
    assert_eq!(out.code(), 3, "{out:?}");
    let out = exec(mode, &[], &img, &["/bin/false"]).run();
    assert_eq!(out.code(), 1, "{out:?}");
}

fn the_process_runs_as_the_caller(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let acct = test_account();
    let out = exec(mode, &[], &img, &["id", "-u"]).run();
    assert_eq!(stdout(&out), acct.uid.to_string());
    let out = exec(mode, &[], &img, &["id", "-g"]).run();
    assert_eq!(stdout(&out), acct.gid.to_string());
    // The caller's entry is added to the container's passwd.
    let out = exec(mode, &[], &img, &["id", "-un"]).run();
    assert_eq!(stdout(&out), acct.name);
}

fn home_and_current_directory_are_bound(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let acct = test_account();
    let out = sh(mode, &img, "echo $HOME; pwd").cwd(&acct.home).run();
    let home = acct.home.display().to_string();
    assert_eq!(stdout(&out), format!("{home}\n{home}"));
    // A directory outside $HOME, /tmp and /var/tmp is only visible through the cwd bind.
    let cwd = outside_dir();
    std::fs::write(cwd.path().join("marker.txt"), "from the host\n").unwrap();
    let out = sh(mode, &img, "pwd; cat marker.txt").cwd(cwd.path()).run();
    assert_eq!(
        stdout(&out),
        format!("{}\nfrom the host", cwd.path().display())
    );
}

/// A directory of the test user under /srv, away from every default bind.
fn outside_dir() -> TempDir {
    std::fs::create_dir_all("/srv").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("apptainer-test-cwd-")
        .tempdir_in("/srv")
        .unwrap();
    let acct = test_account();
    std::os::unix::fs::chown(dir.path(), Some(acct.uid), Some(acct.gid)).unwrap();
    dir
}

fn bind_read_write_and_read_only(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let data = tempdir_for(TEST_USER);
    let spec = format!("{}:/mnt/data", data.path().display());
    let out = exec(
        mode,
        &["--bind", &spec],
        &img,
        &["/bin/sh", "-c", "echo written > /mnt/data/f"],
    )
    .run();
    out.assert_success();
    assert_eq!(
        std::fs::read_to_string(data.path().join("f")).unwrap(),
        "written\n"
    );
    let ro = format!("{spec}:ro");
    let out = exec(
        mode,
        &["-B", &ro],
        &img,
        &["/bin/sh", "-c", "cat /mnt/data/f; echo x > /mnt/data/g"],
    )
    .run();
    assert!(
        !out.success(),
        "a read-only bind must refuse writes: {out:?}"
    );
    assert_eq!(out.stdout, "written\n");
    assert!(!data.path().join("g").exists());
}

fn bind_of_a_missing_path_fails_with_one_line(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = exec(mode, &["--bind", "/no/such/dir:/mnt"], &img, &["/bin/true"]).run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.starts_with("FATAL:") && out.stderr.contains("/no/such/dir"),
        "{out:?}"
    );
}

fn bind_of_an_unreadable_file_is_refused(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = exec(
        mode,
        &["--bind", "/etc/shadow:/mnt/shadow"],
        &img,
        &["/bin/cat", "/mnt/shadow"],
    )
    .run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(
        out.stderr,
        "FATAL:   bind source \"/etc/shadow\" is not readable by you\n"
    );
    assert!(!out.stdout.contains("root:"), "{out:?}");
}

fn apptainerenv_reaches_the_container_and_beats_the_image(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = sh(mode, &img, "echo $X")
        .env("APPTAINERENV_X", "from-env")
        .run();
    assert_eq!(stdout(&out), "from-env");
    let out = sh(mode, &img, "echo $JAVA_HOME")
        .env("APPTAINERENV_JAVA_HOME", "/override")
        .run();
    assert_eq!(stdout(&out), "/override");
    let out = exec(
        mode,
        &["--env", "JAVA_HOME=/flag"],
        &img,
        &["/bin/sh", "-c", "echo $JAVA_HOME"],
    )
    .run();
    assert_eq!(stdout(&out), "/flag");
}

fn image_env_wins_over_host_env(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = sh(mode, &img, "echo $JAVA_HOME; echo $HOST_ONLY")
        .env("JAVA_HOME", "/test")
        .env("HOST_ONLY", "host")
        .run();
    assert_eq!(stdout(&out), "/opt/java\nhost");
}

fn cleanenv_drops_host_variables(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = exec(
        mode,
        &["--cleanenv"],
        &img,
        &["/bin/sh", "-c", "echo \"[$HOST_VAR] [$Y] $LANG\""],
    )
    .env("HOST_VAR", "123")
    .env("APPTAINERENV_Y", "kept")
    .run();
    assert_eq!(stdout(&out), "[] [kept] C");
}

fn image_path_is_used(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = sh(mode, &img, "echo $PATH")
        .env("PATH", "/host/only:/usr/bin:/bin")
        .run();
    assert_eq!(
        stdout(&out),
        "/opt/tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

#[test]
fn missing_image_is_one_clear_error() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user"
    );
    let out = UserCmd::new(&["exec", "/no/such/image.sif", "/bin/true"]).run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("/no/such/image.sif"), "{out:?}");
}

#[test]
fn unsupported_options_are_refused_by_name() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user"
    );
    let args = [
        "exec",
        "--security",
        "seccomp:x.json",
        "/no/such/image.sif",
        "/bin/true",
    ];
    let out = UserCmd::new(&args).run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "FATAL:   --security is not supported by this build yet"
    );
    assert!(!Path::new("/no/such/image.sif").exists());
}

apptainer_tests::both_modes!(
    true_succeeds_and_exit_codes_pass_through,
    the_process_runs_as_the_caller,
    home_and_current_directory_are_bound,
    bind_read_write_and_read_only,
    bind_of_a_missing_path_fails_with_one_line,
    bind_of_an_unreadable_file_is_refused,
    apptainerenv_reaches_the_container_and_beats_the_image,
    image_env_wins_over_host_env,
    cleanenv_drops_host_variables,
    image_path_is_used,
);
