//! Action options as the plain test user, in setuid mode and with `--userns`: `--contain`,
//! `--no-home`, `--pwd`, `--env-file`, `APPTAINER_BIND` appended to `--bind`, `--no-mount`,
//! `shell` and `test`, `--hostname`, and option errors.

use apptainer_tests::launch::{
    action, pull_fixture, pull_fixture_into, ready, Mode, PulledImage, READY,
};
use apptainer_tests::{
    installed, left_in, require, setuid_starter, tempdir_for, test_account, test_user_exists, Out,
    UserCmd, TEST_USER, TEST_USER2,
};
use std::path::{Path, PathBuf};

/// The `entrypoint:none` fixture as a SIF, pulled by the test user into its own directory.
fn pull() -> PulledImage {
    pull_fixture(TEST_USER, "entrypoint", "none")
}

fn sh(mode: Mode, flags: &[&str], img: &PulledImage, script: &str) -> UserCmd {
    action(mode, "exec", flags, &img.sif, &["/bin/sh", "-c", script])
}

fn stdout(out: &Out) -> &str {
    out.assert_success();
    out.stdout.trim_end()
}

fn contain_gives_an_empty_home_and_tmp(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let home = test_account().home;
    std::fs::write(img.dir.path().join("host-file"), "x").unwrap();
    let script = format!(
        "ls -A $HOME | wc -l; ls -A /tmp | wc -l; test -e {}/host-file && echo host-file || echo no-host-file; pwd",
        img.dir.path().display()
    );
    let out = sh(mode, &[], &img, &script).cwd(img.dir.path()).run();
    assert!(
        stdout(&out).contains("\nhost-file\n"),
        "without --contain the host's /var/tmp is bound: {out:?}"
    );
    let out = sh(mode, &["--contain"], &img, &script)
        .cwd(img.dir.path())
        .run();
    assert_eq!(
        stdout(&out),
        format!("0\n0\nno-host-file\n{}", home.display())
    );
}

/// A file in the test user's real home directory, removed on drop.
struct HomeMarker(PathBuf);

impl HomeMarker {
    fn new(tag: &str) -> HomeMarker {
        let acct = test_account();
        let path = acct.home.join(format!(".apptainer-test-marker-{tag}"));
        std::fs::write(&path, "marker\n").unwrap();
        std::os::unix::fs::chown(&path, Some(acct.uid), Some(acct.gid)).unwrap();
        HomeMarker(path)
    }
}

impl Drop for HomeMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn no_home_leaves_home_unmounted(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let marker = HomeMarker::new(&format!("{mode:?}"));
    let script = format!("test -e {:?} && echo bound || echo not-bound", marker.0);
    let out = sh(mode, &[], &img, &script).run();
    assert_eq!(stdout(&out), "bound");
    let out = sh(mode, &["--no-home"], &img, &script).cwd("/").run();
    assert_eq!(stdout(&out), "not-bound");
}

fn pwd_sets_the_working_directory(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = sh(mode, &["--pwd", "/opt"], &img, "pwd").run();
    assert_eq!(stdout(&out), "/opt");
}

fn env_file_is_evaluated_and_env_wins_over_it(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let file = img.dir.path().join("vars.env");
    std::fs::write(&file, "A=one\nB=\"$A two\"\nJAVA_HOME=/from-file\n").unwrap();
    let f = file.to_str().unwrap();
    let out = sh(mode, &["--env-file", f], &img, "echo \"$A|$B|$JAVA_HOME\"").run();
    assert_eq!(stdout(&out), "one|one two|/from-file");
    let out = sh(mode, &["--env-file", f, "--env", "A=flag"], &img, "echo $A").run();
    assert_eq!(stdout(&out), "flag");
}

fn bind_env_values_are_appended_to_the_flag(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let a = tempdir_for(TEST_USER);
    let b = tempdir_for(TEST_USER);
    std::fs::write(a.path().join("a"), "A\n").unwrap();
    std::fs::write(b.path().join("b"), "B\n").unwrap();
    let flag = format!("{}:/mnt/a", a.path().display());
    let env = format!("{}:/mnt/b:ro", b.path().display());
    let out = sh(mode, &["-B", &flag], &img, "cat /mnt/a/a /mnt/b/b")
        .env("APPTAINER_BIND", &env)
        .run();
    assert_eq!(stdout(&out), "A\nB");
}

fn no_mount_tmp_hides_the_host_tmp(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    // The image's own /var/tmp is empty; the host's holds the test's directory.
    let name = img
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let script = format!("test -e /var/tmp/{name} && echo host || echo image");
    let out = sh(mode, &["--no-mount", "tmp"], &img, &script)
        .cwd(test_account().home)
        .run();
    assert_eq!(stdout(&out), "image");
    let out = sh(mode, &[], &img, &script).cwd(test_account().home).run();
    assert_eq!(stdout(&out), "host");
}

fn shell_reads_commands_from_stdin(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = action(mode, "shell", &[], &img.sif, &[])
        .stdin("echo in-shell $JAVA_HOME\nexit 4\n")
        .run();
    assert_eq!(out.code(), 4, "{out:?}");
    assert_eq!(out.stdout, "in-shell /opt/java\n");
}

fn test_without_a_test_script_says_so_and_succeeds(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = action(mode, "test", &[], &img.sif, &[]).run();
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stderr,
        "INFO:    No test script found in container, exiting\n"
    );
}

fn hostname_sets_the_uts_name(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = sh(
        mode,
        &["--hostname", "box1"],
        &img,
        "hostname; cat /etc/hostname",
    )
    .run();
    assert_eq!(stdout(&out), "box1\nbox1");
}

#[test]
fn fakeroot_maps_the_caller_to_root_with_home_at_root() {
    require!(ready(Mode::Userns), READY);
    let img = pull();
    let out = sh(Mode::Userns, &["--fakeroot"], &img, "id -u; echo $HOME").run();
    assert_eq!(stdout(&out), "0\n/root");
    // apptest has a /etc/subuid range: no root-mapped-only warning.
    assert!(!out.stderr.contains("root-mapped"), "{out:?}");
}

#[test]
fn fakeroot_without_a_subuid_range_warns_and_maps_only_the_caller() {
    require!(ready(Mode::Userns), READY);
    let dir = tempdir_for(TEST_USER2);
    let sif = pull_fixture_into(
        TEST_USER2,
        dir.path(),
        "entrypoint",
        "none",
        "none.sif",
        &[],
    );
    let as_user2 = |args: &[&str]| {
        UserCmd::new(args)
            .user(TEST_USER2)
            .env("APPTAINER_CACHEDIR", dir.path().join("cache"))
            .run()
    };
    let script = "id -u; wc -l < /proc/self/uid_map";
    let out = as_user2(&[
        "exec",
        "--fakeroot",
        sif.to_str().unwrap(),
        "/bin/sh",
        "-c",
        script,
    ]);
    assert_eq!(stdout(&out), "0\n1");
    assert!(
        out.stderr.contains(
            "WARNING: User not listed in /etc/subuid or /etc/subgid, trying root-mapped namespace"
        ),
        "{out:?}"
    );
}

#[test]
fn writable_sandbox_keeps_changes() {
    require!(ready(Mode::Userns), READY);
    let dir = tempdir_for(TEST_USER);
    let sbx = pull_fixture_into(
        TEST_USER,
        dir.path(),
        "entrypoint",
        "none",
        "sbx",
        &["--sandbox"],
    );
    let sbx_arg = sbx.to_str().unwrap();
    let out = UserCmd::new(&[
        "exec",
        "--writable",
        sbx_arg,
        "/bin/sh",
        "-c",
        "echo kept > /opt/new",
    ])
    .run();
    out.assert_success();
    assert_eq!(
        std::fs::read_to_string(sbx.join("opt/new")).unwrap(),
        "kept\n"
    );
    // Without --writable the same sandbox is read-only.
    let out = UserCmd::new(&["exec", sbx_arg, "/bin/sh", "-c", "echo x > /opt/other"]).run();
    assert!(!out.success(), "{out:?}");
    assert!(!sbx.join("opt/other").exists());
}

/// A squashfs image with no /bin/sh: only a copy of busybox named `env` (busybox picks its
/// applet from argv[0]) and the directories the default mounts need.
fn shell_less_image(dir: &std::path::Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "proc", "sys", "dev", "tmp", "var/tmp", "home", "root", "etc", "tools",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in [
        "passwd",
        "group",
        "hosts",
        "resolv.conf",
        "hostname",
        "localtime",
    ] {
        std::fs::write(root.join("etc").join(f), "").unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("tools/env")).unwrap();
    let img = dir.join("noshell.sqfs");
    let st = std::process::Command::new("mksquashfs")
        .arg(&root)
        .arg(&img)
        .args(["-noappend", "-quiet", "-all-root"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    img
}

fn exec_without_a_shell_in_the_image_runs_the_command_directly(mode: Mode) {
    require!(ready(mode), READY);
    require!(
        std::path::Path::new("/bin/busybox").exists(),
        "busybox on the host"
    );
    let dir = tempdir_for(TEST_USER);
    let img = shell_less_image(dir.path());
    let mut argv = vec!["exec"];
    if let Mode::Userns = mode {
        argv.push("--userns");
    }
    argv.extend([img.to_str().unwrap(), "/tools/env"]);
    let out = UserCmd::new(&argv)
        .env("APPTAINERENV_FOO", "$bar")
        .env("HOST_V", "1")
        .run();
    let lines: Vec<&str> = stdout(&out).lines().collect();
    // Without a shell nothing evaluates the override: it arrives literally.
    assert!(lines.contains(&"FOO=$bar"), "{out:?}");
    assert!(lines.contains(&"HOST_V=1"), "{out:?}");
    let run = UserCmd::new(&["run", img.to_str().unwrap()]).run();
    assert_eq!(run.code(), 255, "run needs /bin/sh: {run:?}");
}

/// `exec` evaluates the image's env scripts itself when it knows them all (frontend
/// `launch::direct`) and otherwise runs them in the image's shell: both must give the command
/// the same environment. An override with a backslash is literal either way but only the
/// shell path takes it unless `--no-eval` is given, which selects the path per run.
fn exec_gives_the_same_environment_with_or_without_the_shell(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let env = |no_eval: bool| {
        let mut flags = vec!["--cleanenv"];
        if no_eval {
            flags.push("--no-eval");
        }
        let mut cmd = action(mode, "exec", &flags, &img.sif, &["env"]);
        cmd = cmd.env("APPTAINER_DEBUG", "1");
        cmd.env("APPTAINERENV_PROBE", "a\\b c")
            .env("APPTAINERENV_PREPEND_PATH", "/pre")
            .env("TERM", "xterm")
            .run()
    };
    let (fast, shell) = (env(true), env(false));
    let direct = "without a shell: the image's env scripts were evaluated here";
    assert!(fast.stderr.contains(direct), "{fast:?}");
    assert!(!shell.stderr.contains(direct), "{shell:?}");
    // Shell-owned (busybox sh exports SHLVL) and --no-eval's own variables aside.
    let vars = |out: &Out| {
        let mut v: Vec<String> = stdout(out)
            .lines()
            .filter(|l| !l.starts_with("SHLVL=") && !l.contains("_NO_EVAL=1"))
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let fast_vars = vars(&fast);
    assert_eq!(fast_vars, vars(&shell));
    for want in [
        "PROBE=a\\b c",
        "JAVA_HOME=/opt/java",
        "QUOTED=it's \"quoted\" $HOME `x` back\\slash",
        "PATH=/pre:/opt/tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm",
    ] {
        assert!(
            fast_vars.iter().any(|l| l == want),
            "{want:?} in {fast_vars:?}"
        );
    }
}

/// A script without a `#!` line runs under /bin/sh, by path and by name, as it did when the
/// image's shell executed every command (the starter's execvp-like fallback on ENOEXEC).
fn exec_runs_a_script_without_a_shebang_line_with_sh(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let dir = tempdir_for(TEST_USER);
    let script = dir.path().join("noshebang");
    std::fs::write(&script, "echo \"ran $0 with $1\"\n").unwrap();
    std::process::Command::new("chmod")
        .args([
            "0755",
            script.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    let bind = format!("{}:/opt/scripts", dir.path().display());
    let flags = ["-B", bind.as_str()];
    let by_path = action(
        mode,
        "exec",
        &flags,
        &img.sif,
        &["/opt/scripts/noshebang", "x"],
    )
    .run();
    assert_eq!(stdout(&by_path), "ran /opt/scripts/noshebang with x");
    let by_name = action(mode, "exec", &flags, &img.sif, &["noshebang", "y"])
        .env("APPTAINERENV_PREPEND_PATH", "/opt/scripts")
        .run();
    assert_eq!(stdout(&by_name), "ran /opt/scripts/noshebang with y");
}

fn dns_sets_the_name_servers(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = action(
        mode,
        "exec",
        &["--dns", "10.0.0.1,fd00::1"],
        &img.sif,
        &["cat", "/etc/resolv.conf"],
    )
    .run();
    assert_eq!(stdout(&out), "nameserver 10.0.0.1\nnameserver fd00::1");
    let bad = action(mode, "exec", &["--dns", "not-an-ip"], &img.sif, &["true"]).run();
    assert_eq!(
        bad.stderr,
        "FATAL:   --dns \"not-an-ip\": not an IP address\n"
    );
}

fn scratch_is_writable_and_kept_in_the_workdir(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let script = "echo x > /scratch/f && cat /scratch/f";
    let out = action(
        mode,
        "exec",
        &["--scratch", "/scratch"],
        &img.sif,
        &["/bin/sh", "-c", script],
    )
    .run();
    assert_eq!(stdout(&out), "x");
    let work = tempdir_for(TEST_USER);
    let w = work.path().to_str().unwrap();
    let out = action(
        mode,
        "exec",
        &["-S", "/scratch", "-W", w],
        &img.sif,
        &["/bin/sh", "-c", script],
    )
    .run();
    assert_eq!(stdout(&out), "x");
    assert_eq!(
        std::fs::read_to_string(work.path().join("scratch/scratch/f")).unwrap(),
        "x\n"
    );
}

fn caller_umask_is_kept_unless_no_umask(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let userns = if let Mode::Userns = mode {
        "--userns"
    } else {
        ""
    };
    let bin = apptainer_tests::apptainer_bin();
    let script = format!(
        "umask 027; {b} exec {userns} {s} sh -c umask; {b} exec {userns} --no-umask {s} sh -c umask",
        b = bin.display(),
        s = img.sif.display()
    );
    let out = UserCmd::program("/bin/sh", &["-c", &script]).run();
    assert_eq!(stdout(&out), "0027\n0022");
}

#[test]
fn conflicting_writable_flags_are_refused() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user"
    );
    let out = UserCmd::new(&[
        "exec",
        "--writable",
        "--writable-tmpfs",
        "/no/such.sif",
        "true",
    ])
    .run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(
        out.stderr,
        "FATAL:   --writable and --writable-tmpfs cannot be used together\n"
    );
}

#[test]
fn config_is_refused_for_a_plain_user_with_the_setuid_starter() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user"
    );
    require!(setuid_starter().is_some(), "starter installed setuid root");
    let out = UserCmd::new(&[
        "--config",
        "/tmp/other.conf",
        "exec",
        "/no/such.sif",
        "true",
    ])
    .run();
    assert_eq!(out.code(), 255, "{out:?}");
    assert_eq!(
        out.stderr,
        "FATAL:   --config requires to be root or an unprivileged installation\n"
    );
}

fn pid_namespace_has_an_init_that_reaps_orphans(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    // The subshell's sleep is orphaned at once and reparented to PID 1; a live init reaps it
    // when it exits, so no zombie is left for the second listing.
    let script = "(sleep 0.1 &); sleep 0.6; ps -o pid,stat,comm; exit 7";
    let out = sh(mode, &["--pid"], &img, script).run();
    assert_eq!(out.code(), 7, "{out:?}");
    let first = out.stdout.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        first.trim_start().starts_with("1 ") && first.contains("starter"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("2 ") && l.ends_with("sh")),
        "{out:?}"
    );
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("Z")),
        "{out:?}"
    );
}

fn pid_namespace_without_init_runs_the_process_as_pid_1(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let out = sh(mode, &["--pid", "--no-init"], &img, "echo $$").run();
    assert_eq!(stdout(&out), "1");
}

/// A directory of the test user's (`APPTAINER_TMPDIR` for an extraction) in `img`'s.
fn user_tmp(img: &PulledImage) -> PathBuf {
    let tmp = img.dir.path().join("tmp");
    UserCmd::program("mkdir", &[tmp.to_str().unwrap()])
        .run()
        .assert_success();
    tmp
}

/// The container runs from `TMPDIR/rootfs-XXXXXX/root` (its `APPTAINER_CONTAINER`, first line
/// of `out`), and the code and the second line are the container's.
fn assert_ran_extracted(out: &Out, tmp: &Path) {
    assert_eq!(out.code(), 3, "{out:?}");
    let mut lines = out.stdout.lines();
    let container = lines.next().unwrap_or_default();
    let inside = container.strip_prefix(&format!("{}/rootfs-", tmp.display()));
    assert!(inside.is_some_and(|r| r.ends_with("/root")), "{out:?}");
    assert_eq!(lines.next(), Some("busybox"), "{out:?}");
}

const EXTRACTED: &str = "echo $APPTAINER_CONTAINER; test -x /bin/busybox && echo busybox; exit 3";

fn unsquash_runs_from_a_temporary_sandbox_removed_after_exit(mode: Mode) {
    require!(ready(mode), READY);
    let img = pull();
    let tmp = user_tmp(&img);
    let out = sh(mode, &["--unsquash"], &img, EXTRACTED)
        .env("APPTAINER_TMPDIR", &tmp)
        .run();
    assert_ran_extracted(&out, &tmp);
    assert!(!out.stderr.contains("WARNING"), "{out:?}");
    assert_eq!(left_in(&tmp), Vec::<String>::new(), "{out:?}");
}

#[test]
fn without_fuse_user_namespace_mode_runs_from_an_extraction() {
    require!(ready(Mode::Userns), READY);
    require!(
        apptainer_tests::is_root() && which("unshare"),
        "root and unshare, to hide /dev/fuse"
    );
    let img = pull();
    let tmp = user_tmp(&img);
    let blocker = img.dir.path().join("nofuse");
    std::fs::write(&blocker, "").unwrap();
    let acct = test_account();
    // In a private mount namespace, /dev/fuse is covered by a root-owned file the user
    // cannot open for writing; then the frontend runs as the user, with the user's env.
    let script = "mount --bind \"$1\" /dev/fuse && shift && \
        exec setpriv --reuid=\"$USER\" --regid=\"$USER\" --init-groups -- \"$@\"";
    let app = apptainer_tests::apptainer_bin();
    let args = [
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        blocker.to_str().unwrap(),
        app.to_str().unwrap(),
        "exec",
        "--userns",
        img.arg(),
        "/bin/sh",
        "-c",
        EXTRACTED,
    ];
    let out = UserCmd::program("unshare", &args)
        .root()
        .env("HOME", &acct.home)
        .env("USER", TEST_USER)
        .env("LOGNAME", TEST_USER)
        .env("APPTAINER_TMPDIR", &tmp)
        .cwd(img.dir.path())
        .run();
    assert_ran_extracted(&out, &tmp);
    assert!(
        out.stderr
            .starts_with("WARNING: FUSE is unavailable: extracting"),
        "{out:?}"
    );
    assert_eq!(left_in(&tmp), Vec::<String>::new(), "{out:?}");
}

fn which(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

apptainer_tests::both_modes!(
    unsquash_runs_from_a_temporary_sandbox_removed_after_exit,
    pid_namespace_has_an_init_that_reaps_orphans,
    pid_namespace_without_init_runs_the_process_as_pid_1,
    contain_gives_an_empty_home_and_tmp,
    no_home_leaves_home_unmounted,
    pwd_sets_the_working_directory,
    env_file_is_evaluated_and_env_wins_over_it,
    bind_env_values_are_appended_to_the_flag,
    no_mount_tmp_hides_the_host_tmp,
    shell_reads_commands_from_stdin,
    test_without_a_test_script_says_so_and_succeeds,
    hostname_sets_the_uts_name,
    exec_without_a_shell_in_the_image_runs_the_command_directly,
    exec_gives_the_same_environment_with_or_without_the_shell,
    exec_runs_a_script_without_a_shebang_line_with_sh,
    caller_umask_is_kept_unless_no_umask,
    dns_sets_the_name_servers,
    scratch_is_writable_and_kept_in_the_workdir,
);
