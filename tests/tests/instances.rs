//! Instances, end to end as the plain test user in both install modes: `instance start` runs
//! the startscript detached and records the instance where the reference does;
//! `exec|run|shell instance://NAME` join its namespaces; `list`, `stats`, `--pid-file` and
//! `stop` (signal, timeout, --all) behave as documented, and after a stop nothing is left:
//! no process, no FUSE daemon, no mount, no loop device. The installed starters are also fed
//! hostile join Plans directly (pid 1, another user's process, a process that is not an
//! instance): each is refused with one FATAL line.

use apptainer_tests::launch::{pull_fixture_into, Mode};
use apptainer_tests::plans::{assert_one_fatal, run_plan_as};
use apptainer_tests::{
    account, assert_no_leftover_mounts, both_modes, fixtures_built, installed, left_in,
    mounts_snapshot, names_in, require, serial, setuid_starter, starter_bin, tempdir_for,
    test_account, test_user_exists, Out, UserCmd, TEST_USER, TEST_USER2,
};
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tempfile::TempDir;

/// The startscript of the test image: prints its arguments, can be made to ignore the stop
/// signals, then stays in the foreground.
const STARTSCRIPT: &str = "#!/bin/sh\necho \"started $*\"\n\
if test \"$1\" = stubborn; then trap '' INT TERM; fi\nexec sleep 100000\n";
const RUNSCRIPT: &str = "#!/bin/sh\necho \"runscript $*\"\n";

/// The test image (a SIF with a startscript), built once per run from the busybox fixture.
fn image() -> Option<&'static Path> {
    static IMG: OnceLock<Option<PathBuf>> = OnceLock::new();
    IMG.get_or_init(build_image).as_deref()
}

fn build_image() -> Option<PathBuf> {
    if !(installed() && test_user_exists() && fixtures_built()) {
        return None;
    }
    let dir = Path::new("/var/tmp/apptainer-test-instances-fixture");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir).ok()?;
    let acct = test_account();
    std::os::unix::fs::chown(dir, Some(acct.uid), Some(acct.gid)).ok()?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).ok()?;
    let sandbox = pull_fixture_into(TEST_USER, dir, "busybox", "latest", "sb", &["--sandbox"]);
    for (name, text) in [("startscript", STARTSCRIPT), ("runscript", RUNSCRIPT)] {
        let p = sandbox.join(".singularity.d").join(name);
        std::fs::write(&p, text).ok()?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).ok()?;
    }
    let sif = dir.join("instance.sif");
    UserCmd::new(&["build", sif.to_str()?, sandbox.to_str()?])
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .run()
        .assert_success();
    Some(sif)
}

const NEEDS: &str = "installed apptainer, the test user and the built fixtures";

/// A failed test must not leave its instances running for the next one.
impl Drop for Session {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A user's own APPTAINER_CONFIGDIR, so tests never see each other's instances.
struct Session {
    config: TempDir,
    mode: Mode,
}

impl Session {
    fn new(mode: Mode) -> Session {
        Session {
            config: tempdir_for(TEST_USER),
            mode,
        }
    }

    /// `instance stop --all` of this session (nothing to stop is fine).
    fn stop_all(&self) {
        let _ = self.run(&["instance", "stop", "--all", "--timeout", "2"]);
    }

    fn cmd(&self, args: &[&str]) -> UserCmd {
        UserCmd::new(args).env("APPTAINER_CONFIGDIR", self.config.path())
    }

    fn run(&self, args: &[&str]) -> Out {
        self.cmd(args).run()
    }

    /// `instance start [--userns] FLAGS IMAGE NAME ARGS`, which must succeed.
    fn start(&self, flags: &[&str], name: &str, args: &[&str]) -> Out {
        let mut argv = vec!["instance", "start"];
        argv.extend(self.mode.flag());
        argv.extend_from_slice(flags);
        argv.push(image().unwrap().to_str().unwrap());
        argv.push(name);
        argv.extend_from_slice(args);
        let out = self.run(&argv);
        out.assert_success();
        assert_eq!(
            out.stderr, "INFO:    instance started successfully\n",
            "{out:?}"
        );
        out
    }

    /// The `instance list --json` entries.
    fn list(&self) -> Vec<Value> {
        let out = self.run(&["instance", "list", "--json"]);
        out.assert_success();
        let v: Value = serde_json::from_str(&out.stdout).expect("list --json is JSON");
        v["instances"].as_array().expect("instances array").clone()
    }

    fn pid_of(&self, name: &str) -> i32 {
        let list = self.list();
        let entry = list
            .iter()
            .find(|i| i["instance"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {list:?}"));
        entry["pid"].as_i64().unwrap() as i32
    }

    fn state_dir(&self) -> PathBuf {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        self.config
            .path()
            .join("instances/app")
            .join(host.trim())
            .join(TEST_USER)
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn mnt_ns(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Live processes of the test user whose command line is exactly `cmdline` (words joined).
fn user_processes(cmdline: &str) -> Vec<String> {
    live_user_processes()
        .filter(|(_, cmd)| cmd.trim_end() == cmdline)
        .map(|(pid, cmd)| format!("{pid}: {cmd}"))
        .collect()
}

/// FUSE daemons serving the test image: processes of the test user with the image open.
fn image_daemons() -> Vec<String> {
    let img = image().unwrap();
    live_user_processes()
        .filter(|(pid, _)| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == img))
        })
        .map(|(pid, cmd)| format!("{pid}: {cmd}"))
        .collect()
}

fn live_user_processes() -> impl Iterator<Item = (String, String)> {
    let uid = test_account().uid;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(move |e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (!cmd.is_empty() && alive(pid.parse().ok()?)).then_some((pid, cmd))
        })
}

fn a_started_instance_runs_its_startscript_and_is_joined(mode: Mode) {
    let _guard = serial();
    require!(image().is_some() && mode.available(), NEEDS);
    let before = mounts_snapshot();
    let s = Session::new(mode);
    s.start(&[], "web", &["one", "two"]);
    let pid = s.pid_of("web");
    let list = s.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["img"], image().unwrap().to_str().unwrap());
    let state = s.state_dir().join("web/web.json");
    assert_eq!(
        std::fs::metadata(&state).unwrap().mode() & 0o777,
        0o600,
        "{state:?}"
    );
    let log = list[0]["logOutPath"].as_str().unwrap().to_string();
    assert!(log.ends_with(&format!("/{TEST_USER}/web.out")), "{log}");
    // The startscript runs detached: its output goes to the log, not to our stdout.
    let text = wait_for_file_text(Path::new(&log), "started one two");
    assert_eq!(text, "started one two\n");
    let table = s.run(&["instance", "list"]);
    let expected_row = format!("web              {pid}");
    assert!(
        table.stdout.starts_with("INSTANCE NAME    PID")
            && table
                .stdout
                .lines()
                .nth(1)
                .unwrap()
                .starts_with(&expected_row),
        "{table:?}"
    );

    // exec joins the instance's mount namespace; run and shell work the same way.
    let ns = s.run(&["exec", "instance://web", "readlink", "/proc/self/ns/mnt"]);
    ns.assert_success();
    assert_eq!(ns.stdout.trim(), mnt_ns(&pid.to_string()), "{ns:?}");
    assert_ne!(ns.stdout.trim(), mnt_ns("self"));
    let run = s.run(&["run", "instance://web", "a", "b"]);
    assert_eq!(run.stdout, "runscript a b\n", "{run:?}");
    let shell = s.cmd(&["shell", "instance://web"]).stdin("id -u\n").run();
    assert_eq!(
        shell.stdout.trim(),
        test_account().uid.to_string(),
        "{shell:?}"
    );

    let stop = s.run(&["instance", "stop", "web"]);
    stop.assert_success();
    assert_eq!(
        stop.stderr,
        format!(
            "INFO:    Stopping web instance of {} (PID={pid})\n",
            image().unwrap().display()
        ),
        "{stop:?}"
    );
    assert!(!alive(pid), "instance init {pid} still running");
    assert!(s.list().is_empty());
    assert!(!state.exists(), "state left behind");
    assert_eq!(image_daemons(), Vec::<String>::new());
    assert_eq!(user_processes("sleep 100000"), Vec::<String>::new());
    assert_no_leftover_mounts(&before);
}

/// Waits for the detached startscript's output (polling; the test fails if it never comes).
fn wait_for_file_text(path: &Path, needle: &str) -> String {
    for _ in 0..1000 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{path:?} never contained {needle:?}")
}

fn pid_file_pid_namespace_and_stop_all(mode: Mode) {
    let _guard = serial();
    require!(image().is_some() && mode.available(), NEEDS);
    let before = mounts_snapshot();
    let s = Session::new(mode);
    let pidfile = s.config.path().join("web.pid");
    s.start(&["--pid-file", pidfile.to_str().unwrap()], "one", &[]);
    s.start(&["--pid"], "two", &[]);
    let (one, two) = (s.pid_of("one"), s.pid_of("two"));
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{one}\n")
    );
    // In its own PID namespace the instance's init is PID 1, named as the reference's.
    let comm = s.run(&["exec", "instance://two", "cat", "/proc/1/comm"]);
    assert_eq!(comm.stdout, "appinit\n", "{comm:?}");
    let again = s.run(&[
        "instance",
        "start",
        image().unwrap().to_str().unwrap(),
        "one",
    ]);
    again.assert_one_error("instance one already exists");
    let stop = s.run(&["instance", "stop", "--all"]);
    stop.assert_success();
    assert_eq!(stop.stderr.lines().count(), 2, "{stop:?}");
    assert!(!alive(one) && !alive(two));
    assert!(s.list().is_empty());
    assert_eq!(image_daemons(), Vec::<String>::new());
    assert_no_leftover_mounts(&before);
}

fn a_stubborn_instance_is_killed_after_the_timeout(mode: Mode) {
    let _guard = serial();
    require!(image().is_some() && mode.available(), NEEDS);
    let before = mounts_snapshot();
    let s = Session::new(mode);
    s.start(&[], "stubborn", &["stubborn"]);
    let pid = s.pid_of("stubborn");
    let log = s.list()[0]["logOutPath"].as_str().unwrap().to_string();
    wait_for_file_text(Path::new(&log), "started stubborn");
    let stats = s.run(&["instance", "stats", "--json", "stubborn"]);
    stats.assert_success();
    let v: Value = serde_json::from_str(&stats.stdout).expect("stats --json is JSON");
    assert!(v["pids_stats"]["current"].as_u64().unwrap() >= 2, "{v}");
    assert!(
        v["memory_stats"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{v}"
    );
    let stop = s.run(&[
        "instance",
        "stop",
        "--timeout",
        "1",
        "--signal",
        "TERM",
        "stubborn",
    ]);
    stop.assert_success();
    assert!(
        stop.stderr.contains(&format!(
            "INFO:    Killing stubborn instance of {} (PID={pid}) (Timeout)\n",
            image().unwrap().display()
        )),
        "{stop:?}"
    );
    assert!(!alive(pid));
    assert_eq!(user_processes("sleep 100000"), Vec::<String>::new());
    assert_eq!(image_daemons(), Vec::<String>::new());
    assert_no_leftover_mounts(&before);
}

fn instance_run_and_fakeroot_instances(mode: Mode) {
    let _guard = serial();
    require!(image().is_some() && mode.available(), NEEDS);
    let before = mounts_snapshot();
    let s = Session::new(mode);
    let mut argv = vec!["instance", "run"];
    argv.extend(mode.flag());
    argv.extend([image().unwrap().to_str().unwrap(), "rn", "x", "y"]);
    s.run(&argv).assert_success();
    let log = s.list()[0]["logOutPath"].as_str().unwrap().to_string();
    // The runscript exits at once; the instance stays up until it is stopped.
    assert_eq!(
        wait_for_file_text(Path::new(&log), "runscript x y"),
        "runscript x y\n"
    );
    s.start(&["--fakeroot"], "fr", &[]);
    let id = s.run(&["exec", "instance://fr", "id", "-u"]);
    assert_eq!(id.stdout, "0\n", "{id:?}");
    assert_eq!(s.list().len(), 2);
    // SIGKILL cannot be passed on by the init: --force kills the whole instance itself.
    s.run(&["instance", "stop", "--force", "--all"])
        .assert_success();
    assert!(s.list().is_empty());
    assert_eq!(user_processes("sleep 100000"), Vec::<String>::new());
    assert_eq!(image_daemons(), Vec::<String>::new());
    assert_no_leftover_mounts(&before);
}

fn bad_names_and_unknown_instances_get_one_error(mode: Mode) {
    require!(image().is_some() && mode.available(), NEEDS);
    let s = Session::new(mode);
    let img = image().unwrap().to_str().unwrap();
    s.run(&["instance", "start", img, "bad/name"])
        .assert_one_error("\"bad/name\" is not a valid instance name");
    s.run(&["exec", "instance://nothere", "true"])
        .assert_one_error("no instance found with name nothere");
    s.run(&["instance", "stop", "nothere"])
        .assert_one_error("no instance found");
    s.run(&["instance", "stop"]).assert_failure();
}

/// A state file whose pid is some other process of the user is not believed: not listed,
/// removed, and not joinable.
fn a_state_file_pointing_elsewhere_is_dropped(mode: Mode) {
    require!(image().is_some() && mode.available(), NEEDS);
    let s = Session::new(mode);
    let mut sleeper = user_sleep(TEST_USER);
    let dir = s.state_dir().join("fake");
    let forged = json!({
        "pid": sleeper.id(), "ppid": sleeper.id(), "name": "fake", "user": TEST_USER,
        "image": image().unwrap(), "config": null, "userns": mode == Mode::Userns,
        "cgroup": false, "ip": "", "logErrPath": "", "logOutPath": "", "checkpoint": ""
    });
    let acct = test_account();
    let mut dirs: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| *d != s.config.path())
        .collect();
    dirs.reverse();
    for d in dirs {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(acct.uid), Some(acct.gid)).unwrap();
    }
    let file = dir.join("fake.json");
    std::fs::write(&file, forged.to_string()).unwrap();
    std::os::unix::fs::chown(&file, Some(acct.uid), Some(acct.gid)).unwrap();
    s.run(&["exec", "instance://fake", "true"])
        .assert_one_error("no instance found with name fake");
    assert!(s.list().is_empty());
    assert!(!dir.exists(), "stale state kept");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// `instance start --unsquash`: the instance runs from its extraction under
/// `APPTAINER_TMPDIR`, which stays while the instance runs (joins use it too) and goes once
/// the instance is stopped.
fn an_unsquashed_instance_keeps_its_extraction_until_stopped(mode: Mode) {
    let _guard = serial();
    require!(image().is_some() && mode.available(), NEEDS);
    let s = Session::new(mode);
    let tmp = s.config.path().join("tmp");
    UserCmd::program("mkdir", &[tmp.to_str().unwrap()])
        .run()
        .assert_success();
    let mut argv = vec!["instance", "start", "--unsquash"];
    argv.extend(s.mode.flag());
    argv.extend([image().unwrap().to_str().unwrap(), "ux"]);
    s.cmd(&argv)
        .env("APPTAINER_TMPDIR", &tmp)
        .run()
        .assert_success();
    let dirs = names_in(&tmp);
    assert!(
        dirs.len() == 1 && dirs[0].starts_with("rootfs-"),
        "{dirs:?}"
    );
    let root = format!("{}/{}/root", tmp.display(), dirs[0]);
    let env = s.run(&[
        "exec",
        "instance://ux",
        "sh",
        "-c",
        "echo $APPTAINER_CONTAINER",
    ]);
    assert_eq!(env.stdout.trim(), root, "{env:?}");
    s.run(&["instance", "stop", "ux"]).assert_success();
    // The watcher removes it after the instance's starter exits.
    assert_eq!(left_in(&tmp), Vec::<String>::new());
}

/// `sleep` running as `user` (a process that is not an instance).
fn user_sleep(user: &str) -> std::process::Child {
    Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "sleep",
            "1000",
        ])
        .spawn()
        .unwrap()
}

both_modes!(
    an_unsquashed_instance_keeps_its_extraction_until_stopped,
    a_started_instance_runs_its_startscript_and_is_joined,
    pid_file_pid_namespace_and_stop_all,
    a_stubborn_instance_is_killed_after_the_timeout,
    instance_run_and_fakeroot_instances,
    bad_names_and_unknown_instances_get_one_error,
    a_state_file_pointing_elsewhere_is_dropped,
);

// ---- hostile join Plans sent straight to the installed starters ----

fn starter(mode: Mode) -> Option<PathBuf> {
    match mode {
        Mode::Userns => Some(starter_bin()).filter(|p| p.exists()),
        Mode::Setuid => setuid_starter(),
    }
}

/// A join Plan for `pid` that runs `script` with /bin/sh in the test image.
fn join_plan(mode: Mode, pid: u32, script: &str) -> Value {
    json!({
        "version": 1,
        "image": { "path": image().unwrap(), "kind": "sif", "writable": false },
        "namespaces": { "user": mode == Mode::Userns, "pid": false, "ipc": false, "uts": false, "net": false },
        "hostname": null,
        "mounts": [],
        "writable_tmpfs": false,
        "fakeroot": false,
        "join": pid,
        "process": { "argv": ["/bin/sh", "-c", script], "env": ["PATH=/bin"], "cwd": "/" }
    })
}

fn hostile_join_plans_are_refused_by_the_starter(mode: Mode) {
    let _guard = serial();
    require!(image().is_some() && mode.available(), NEEDS);
    let Some(st) = starter(mode) else {
        require!(false, "the installed starter for this mode");
        return;
    };
    let s = Session::new(mode);
    s.start(&[], "target", &[]);
    let pid = s.pid_of("target") as u32;
    // The real instance, as a control: the same Plan shape is accepted.
    let ok = run_plan_as(TEST_USER, &st, &join_plan(mode, pid, "echo joined"));
    assert_eq!(ok.stdout, "joined\n", "{ok:?}");
    let not_instance = "is not an instance";
    assert_one_fatal(
        &run_plan_as(TEST_USER, &st, &join_plan(mode, 1, "id")),
        not_instance,
    );
    let mut mine = user_sleep(TEST_USER);
    assert_one_fatal(
        &run_plan_as(TEST_USER, &st, &join_plan(mode, mine.id(), "id")),
        not_instance,
    );
    // Another user may not join the test user's instance.
    if account(TEST_USER2).is_some() {
        assert_one_fatal(
            &run_plan_as(TEST_USER2, &st, &join_plan(mode, pid, "id")),
            not_instance,
        );
    }
    assert_one_fatal(
        &run_plan_as(TEST_USER, &st, &join_plan(mode, u32::MAX, "id")),
        "",
    );
    let _ = mine.kill();
    let _ = mine.wait();
    s.run(&["instance", "stop", "target"]).assert_success();
}

mod starter_refusals {
    #[test]
    fn setuid() {
        super::hostile_join_plans_are_refused_by_the_starter(apptainer_tests::launch::Mode::Setuid)
    }
    #[test]
    fn userns() {
        super::hostile_join_plans_are_refused_by_the_starter(apptainer_tests::launch::Mode::Userns)
    }
}
