//! Ctrl-C reaches the container: the frontend execs the starter (it does not wait on it), so
//! a SIGINT sent to the terminal's process group reaches the container's process, whose
//! exit status becomes apptainer's. As the plain test user, setuid mode and `--userns`.

use apptainer_tests::launch::{pull_fixture, Mode};
use apptainer_tests::{
    apptainer_bin, fixtures_built, installed, require, test_user_exists, CLEAN_PATH, TEST_USER,
};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn ctrl_c_reaches_the_container_process(mode: Mode) {
    require!(
        installed() && test_user_exists() && fixtures_built(),
        "installed apptainer, test user and fixtures"
    );
    require!(mode.available(), "the starter for this mode");
    let img = pull_fixture(TEST_USER, "busybox", "latest");
    let dir = &img.dir;
    let mut args = vec!["exec"];
    args.extend(mode.flag());
    // The trap reads a file not read before: the image must still be served after the
    // Ctrl-C (in user-namespace mode a FUSE daemon in the same process group would die).
    let script = "trap 'cat /etc/group >/dev/null && echo got-int; exit 42' INT; echo ready; while :; do sleep 1; done";
    args.extend([img.arg(), "/bin/sh", "-c", script]);
    // Its own process group, like a foreground job whose terminal sends Ctrl-C to the group.
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={TEST_USER}"),
            &format!("--regid={TEST_USER}"),
            "--init-groups",
            "--",
        ])
        .arg(apptainer_bin())
        .args(&args)
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .current_dir(dir.path())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start apptainer");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n");
    let group = format!("-{}", child.id());
    let kill = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(rest, "got-int\n", "stderr: {stderr}");
    assert_eq!(status.code(), Some(42), "stderr: {stderr}");
}

#[test]
fn ctrl_c_reaches_the_container_process_setuid() {
    ctrl_c_reaches_the_container_process(Mode::Setuid)
}

#[test]
fn ctrl_c_reaches_the_container_process_userns() {
    ctrl_c_reaches_the_container_process(Mode::Userns)
}
