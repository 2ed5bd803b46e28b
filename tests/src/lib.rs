//! Harness for the end-to-end tests: where the installed binaries are, how to run them as
//! the unprivileged test user, and `require!` (skip on a laptop, fail in CI).
//!
//! The environment (test users, registry, fixture images) is prepared by
//! `scripts/test-setup.sh PREFIX`, which `make test` runs before `cargo test`.
//! Every command runs with a clean, explicit environment so a test never depends on the
//! environment of whoever started `cargo test`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

pub mod launch;
pub mod plans;
pub mod racer;
pub mod registries;
pub mod token_server;

/// Skips the current test (prints `SKIPPED: why` and returns) when `cond` is false, or
/// panics when `CI=true`: CI must provide every prerequisite.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            if ::std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI must provide: {}", $why);
            }
            eprintln!("SKIPPED: {}", $why);
            return;
        }
    };
}

/// The unprivileged user the tests run apptainer as (has a /etc/subuid range).
pub const TEST_USER: &str = "apptest";
/// A second unprivileged user for cross-user tests (no /etc/subuid range).
pub const TEST_USER2: &str = "apptest2";
/// The local plain-HTTP registry started by scripts/test-setup.sh.
pub const REGISTRY: &str = "127.0.0.1:5000";
/// PATH given to every command the harness runs.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Upper bound on any single command, so a hung container fails the test instead of CI.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Install prefix under test: `APPTAINER_TEST_PREFIX`, default /opt/apptainer-test.
pub fn prefix() -> PathBuf {
    std::env::var_os("APPTAINER_TEST_PREFIX")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/apptainer-test"))
}

/// The installed `apptainer` binary.
pub fn apptainer_bin() -> PathBuf {
    prefix().join("bin/apptainer")
}

/// The installed non-setuid starter.
pub fn starter_bin() -> PathBuf {
    prefix().join("libexec/apptainer/bin/starter")
}

/// The installed setuid starter path (whether or not it is installed).
pub fn starter_suid_bin() -> PathBuf {
    prefix().join("libexec/apptainer/bin/starter-suid")
}

/// The setuid starter if it is installed setuid root (`make install-suid`).
pub fn setuid_starter() -> Option<PathBuf> {
    let path = starter_suid_bin();
    let meta = std::fs::metadata(&path).ok()?;
    (meta.uid() == 0 && meta.mode() & 0o4000 != 0).then_some(path)
}

/// The installed apptainer.conf.
pub fn conf_path() -> PathBuf {
    prefix().join("etc/apptainer/apptainer.conf")
}

/// Fixture files (OCI layouts, archives): `APPTAINER_TEST_FIXTURES`, default
/// /var/lib/apptainer-test/fixtures. See scripts/fixtures/README.md for the list.
pub fn fixtures() -> PathBuf {
    std::env::var_os("APPTAINER_TEST_FIXTURES")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/apptainer-test/fixtures"))
}

/// OCI image layout directory of a fixture (tags are its refs): use as `oci:DIR:TAG`.
pub fn fixture_layout(name: &str) -> PathBuf {
    fixtures().join("oci").join(name)
}

/// oci-archive tar of one fixture tag: use as `oci-archive:PATH`.
pub fn fixture_oci_archive(name: &str, tag: &str) -> PathBuf {
    fixtures()
        .join("archives")
        .join(format!("{name}_{tag}.oci.tar"))
}

/// docker-archive tar of one fixture tag: use as `docker-archive:PATH`.
pub fn fixture_docker_archive(name: &str, tag: &str) -> PathBuf {
    fixtures()
        .join("archives")
        .join(format!("{name}_{tag}.docker.tar"))
}

/// `docker://127.0.0.1:5000/test/NAME:TAG` for a fixture pushed to the local registry
/// (pull it with `--no-https`).
pub fn docker_ref(name_tag: &str) -> String {
    format!("docker://{REGISTRY}/test/{name_tag}")
}

/// Output of a finished command.
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit code, or 128 + signal number when killed by a signal (as a shell reports it).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    /// Kept for the style guide's example: the standard output.
    pub fn stdout_str(&self) -> &str {
        &self.stdout
    }

    /// Panics with the whole output unless the command succeeded; returns self for chaining.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self:?}");
        self
    }

    /// Panics with the whole output unless the command failed; returns self for chaining.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.success(), "command unexpectedly succeeded: {self:?}");
        self
    }

    /// Panics unless the command failed with exactly one `FATAL:`/`ERROR:` line on stderr,
    /// and that line contains `expect`.
    #[track_caller]
    pub fn assert_one_error(&self, expect: &str) -> &Self {
        self.assert_failure();
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("FATAL:") || l.starts_with("ERROR:"))
            .collect();
        assert_eq!(errors.len(), 1, "want one error line: {self:?}");
        assert!(errors[0].contains(expect), "want {expect:?}: {self:?}");
        self
    }

    /// Panics if any of `secrets` appears on stdout or stderr.
    #[track_caller]
    pub fn assert_no_secret(&self, secrets: &[&str]) -> &Self {
        for secret in secrets {
            assert!(
                !self.stderr.contains(secret) && !self.stdout.contains(secret),
                "a password was printed: {self:?}"
            );
        }
        self
    }
}

impl std::fmt::Debug for Out {
    // Multi-line on purpose: assertion failures then show the output readably.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code(),
            self.stdout,
            self.stderr
        )
    }
}

/// An account from /etc/passwd.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks up `name` in /etc/passwd (the test users are local accounts).
pub fn account(name: &str) -> Option<Account> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .find_map(|line| parse_passwd_line(line, name))
}

fn parse_passwd_line(line: &str, name: &str) -> Option<Account> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0] != name {
        return None;
    }
    Some(Account {
        name: name.to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
    })
}

/// The test user's account; panics when test-setup.sh has not been run.
pub fn test_account() -> Account {
    account(TEST_USER).unwrap_or_else(|| {
        panic!("user {TEST_USER} missing: run scripts/test-setup.sh first (or make test)")
    })
}

/// A command run either as root or as a local user, with a clean environment:
/// `UserCmd::new(&["exec", sif, "true"]).env("K", "v").cwd(dir).stdin(b"..").run()`.
///
/// The environment is exactly HOME (from /etc/passwd; /root for root), USER, LOGNAME,
/// PATH = [`CLEAN_PATH`], LANG=C.UTF-8, plus whatever `.env()` adds. The user switch is
/// `setpriv --reuid --regid --init-groups` (no shell, no PAM); the cwd defaults to the home.
pub struct UserCmd {
    program: OsString,
    args: Vec<OsString>,
    user: Option<String>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl UserCmd {
    /// The installed apptainer with `args`, as the test user.
    pub fn new<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Self {
        Self::program(apptainer_bin(), args)
    }

    /// Any program with `args`, as the test user.
    pub fn program<P: AsRef<std::ffi::OsStr>, S: AsRef<std::ffi::OsStr>>(
        program: P,
        args: &[S],
    ) -> Self {
        UserCmd {
            program: program.as_ref().to_owned(),
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            user: Some(TEST_USER.to_string()),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: COMMAND_TIMEOUT,
        }
    }

    /// Run as another local user (e.g. [`TEST_USER2`]).
    pub fn user(mut self, name: &str) -> Self {
        self.user = Some(name.to_string());
        self
    }

    /// Run as root (the harness process's own identity).
    pub fn root(mut self) -> Self {
        self.user = None;
        self
    }

    /// Adds (or overrides) one environment variable.
    pub fn env<K: Into<OsString>, V: Into<OsString>>(mut self, key: K, value: V) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds (or overrides) several environment variables.
    pub fn envs<K: Into<OsString>, V: Into<OsString>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Working directory (default: the user's home).
    pub fn cwd<P: AsRef<Path>>(mut self, dir: P) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Bytes fed on standard input (default: /dev/null).
    pub fn stdin<B: Into<Vec<u8>>>(mut self, bytes: B) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Overrides [`COMMAND_TIMEOUT`] (a safety net, never an assertion).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the command and leaves it running (stdin and stdout `/dev/null`, stderr
    /// piped), for a test that signals or races it; the caller waits for it.
    pub fn spawn(self) -> std::process::Child {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.program))
    }

    /// Runs the command to completion and collects its output.
    pub fn run(self) -> Out {
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.program));
        let feeder = self.stdin.map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin piped");
            // A program that exits without reading all of stdin is not an error here.
            thread::spawn(move || drop(pipe.write_all(&bytes)))
        });
        let stdout = read_in_background(child.stdout.take().expect("stdout piped"));
        let stderr = read_in_background(child.stderr.take().expect("stderr piped"));
        let status = wait_or_kill(&mut child, self.timeout, &self.program);
        if let Some(f) = feeder {
            let _ = f.join();
        }
        Out {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }

    fn command(&self) -> Command {
        let (name, home) = match &self.user {
            Some(user) => {
                let acct = account(user).unwrap_or_else(|| {
                    panic!("user {user} missing: run scripts/test-setup.sh first (or make test)")
                });
                (acct.name, acct.home)
            }
            None => ("root".to_string(), PathBuf::from("/root")),
        };
        let mut cmd = match &self.user {
            // setpriv changes identity then execs the program directly: no shell, no PAM,
            // the environment stays exactly what is set below.
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .env_clear()
            .env("HOME", &home)
            .env("USER", &name)
            .env("LOGNAME", &name)
            .env("PATH", CLEAN_PATH)
            .env("LANG", "C.UTF-8");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.current_dir(self.cwd.as_deref().unwrap_or(&home));
        cmd
    }
}

fn read_in_background<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn wait_or_kill(child: &mut std::process::Child, timeout: Duration, what: &OsString) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what:?} still running after {timeout:?}: killed");
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {what:?}: {e}"),
        }
    }
}

/// Runs apptainer as the test user in `dir`, with the cache under `dir/cachedir`.
pub fn apptainer_in(dir: &Path, args: &[&str]) -> Out {
    UserCmd::new(args)
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cachedir"))
        .run()
}

/// The paths (relative to the root, in unsquashfs's order) in the squashfs image that starts
/// `offset` bytes into `file`, listed by `unsquashfs -l` (independent of our own code).
pub fn squashfs_listing(file: &Path, offset: u64) -> Vec<String> {
    let out = Command::new("unsquashfs")
        .args(["-l", "-o", &offset.to_string(), "-d", ""])
        .arg(file)
        .output()
        .expect("run unsquashfs");
    assert!(
        out.status.success(),
        "unsquashfs -l failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix('/').map(String::from))
        .collect()
}

/// The installed apptainer as the test user, cwd = the user's home.
pub fn apptainer_as_user(args: &[&str]) -> Out {
    UserCmd::new(args).run()
}

/// The installed apptainer as root, clean environment, cwd = /root.
pub fn apptainer_as_root(args: &[&str]) -> Out {
    UserCmd::new(args).root().run()
}

/// Any program as the test user, clean environment, cwd = the user's home.
pub fn run_as_user(program: &str, args: &[&str]) -> Out {
    UserCmd::program(program, args).run()
}

/// Any program as root, clean environment.
pub fn run_as_root(program: &str, args: &[&str]) -> Out {
    UserCmd::program(program, args).root().run()
}

/// A fresh directory owned by `user` (mode 0700) under /var/tmp, removed on drop.
pub fn tempdir_for(user: &str) -> TempDir {
    let acct = account(user).unwrap_or_else(|| {
        panic!("user {user} missing: run scripts/test-setup.sh first (or make test)")
    });
    let dir = tempfile::Builder::new()
        .prefix("apptainer-test-")
        .tempdir_in("/var/tmp")
        .expect("create a temp dir under /var/tmp");
    std::os::unix::fs::chown(dir.path(), Some(acct.uid), Some(acct.gid))
        .expect("chown the temp dir to the test user");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod the temp dir");
    dir
}

/// The names in `dir`, sorted (none if it cannot be read).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What is left in `dir` once a clean-up that runs after a process has exited (the
/// frontend's watcher of temporary files) is done: polls until `dir` is empty, for at most
/// 60 s (a safety net, not a measured time).
pub fn left_in(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !names_in(dir).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    names_in(dir)
}

/// A fresh directory owned by the test user under /var/tmp, removed on drop.
pub fn user_tempdir() -> TempDir {
    tempdir_for(TEST_USER)
}

/// Mount points (with their source and type) from /proc/self/mountinfo plus `losetup -a`,
/// one entry a line, sorted: compare before and after with [`assert_no_leftover_mounts`].
pub fn mounts_snapshot() -> String {
    let mut lines: BTreeSet<String> = BTreeSet::new();
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    for line in mountinfo.lines() {
        // Fields: id parent maj:min root mountpoint opts [optional...] - fstype source super
        let f: Vec<&str> = line.split(' ').collect();
        let dash = f.iter().position(|x| *x == "-");
        if let (Some(mp), Some(d)) = (f.get(4), dash) {
            let fstype = f.get(d + 1).unwrap_or(&"");
            let source = f.get(d + 2).unwrap_or(&"");
            lines.insert(format!("mount {mp} {fstype} {source}"));
        }
    }
    if let Ok(out) = Command::new("losetup")
        .arg("-a")
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            lines.insert(format!("loop {line}"));
        }
    }
    lines.into_iter().map(|l| l + "\n").collect()
}

/// Panics when mounts or loop devices exist now that were not in `before`. Autoclear loop
/// devices are released by the kernel slightly after the last unmount, so this waits (up to
/// a few seconds) for the set to settle before deciding: it never asserts on timing.
#[track_caller]
pub fn assert_no_leftover_mounts(before: &str) {
    let before: BTreeSet<&str> = before.lines().collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = mounts_snapshot();
        let extra: Vec<&str> = now.lines().filter(|l| !before.contains(l)).collect();
        if extra.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("left behind:\n{}", extra.join("\n"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Serialises the tests of one test binary that compare mount snapshots or create loop
/// devices, so concurrent tests do not show up in each other's before/after comparisons.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the harness runs as root (it needs to, to switch to the test user).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether the test user exists (scripts/test-setup.sh ran).
pub fn test_user_exists() -> bool {
    account(TEST_USER).is_some()
}

/// Whether the installed apptainer exists.
pub fn installed() -> bool {
    apptainer_bin().is_file()
}

/// Whether the test user can create a user namespace (tried for real, once: sysctls and
/// LSM policies both matter).
pub fn user_namespaces_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_root()
            && test_user_exists()
            && run_as_user("unshare", &["--user", "--map-root-user", "true"]).success()
    })
}

/// Whether an unprivileged user can use FUSE: /dev/fuse world read-writable and
/// squashfuse present.
pub fn fuse_available() -> bool {
    let dev_ok = std::fs::metadata("/dev/fuse")
        .map(|m| m.mode() & 0o006 == 0o006)
        .unwrap_or(false);
    let squashfuse = ["squashfuse_ll", "squashfuse"].iter().any(|p| {
        CLEAN_PATH
            .split(':')
            .any(|d| Path::new(d).join(p).is_file())
    });
    dev_ok && squashfuse
}

/// Whether the local registry answers `GET /v2/` with 200.
pub fn registry_up() -> bool {
    let addr: SocketAddr = REGISTRY.parse().expect("REGISTRY is an address");
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /v2/ HTTP/1.0\r\nHost: {REGISTRY}\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")
}

/// Whether scripts/test-setup.sh built the fixtures.
pub fn fixtures_built() -> bool {
    fixtures().join("stamp").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_defaults_to_the_test_prefix_layout() {
        let p = prefix();
        assert!(apptainer_bin().starts_with(&p));
        assert!(apptainer_bin().ends_with("bin/apptainer"));
        assert!(starter_suid_bin().ends_with("libexec/apptainer/bin/starter-suid"));
    }

    #[test]
    fn root_account_is_found_in_passwd() {
        let root = account("root").expect("root in /etc/passwd");
        assert_eq!(root.uid, 0);
        assert!(account("no-such-user-for-sure").is_none());
    }

    #[test]
    fn snapshot_lists_the_root_mount() {
        assert!(mounts_snapshot().lines().any(|l| l.starts_with("mount / ")));
    }

    #[test]
    fn commands_as_root_get_a_clean_environment() {
        require!(is_root(), "tests run as root");
        let out = UserCmd::program("env", &[] as &[&str])
            .root()
            .env("X_TEST", "a b")
            .run();
        assert!(out.success(), "{out:?}");
        assert!(out.stdout.contains("X_TEST=a b\n"), "{out:?}");
        assert!(out.stdout.contains("HOME=/root\n"), "{out:?}");
        assert!(!out.stdout.contains("CARGO"), "{out:?}");
    }

    #[test]
    fn commands_as_the_test_user_run_with_its_identity() {
        require!(is_root(), "tests run as root");
        require!(
            test_user_exists(),
            "test user apptest (scripts/test-setup.sh)"
        );
        let dir = user_tempdir();
        let out = UserCmd::program("sh", &["-c", "id -un; pwd; echo $HOME; cat; touch f"])
            .cwd(dir.path())
            .stdin("piped\n")
            .run();
        let home = test_account().home;
        let expected = format!(
            "{TEST_USER}\n{}\n{}\npiped\n",
            dir.path().display(),
            home.display()
        );
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout, expected);
        let owner = std::fs::metadata(dir.path().join("f")).unwrap().uid();
        assert_eq!(owner, test_account().uid);
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        require!(is_root(), "tests run as root");
        let out = UserCmd::program("sh", &["-c", "exit 3"]).root().run();
        assert_eq!(out.code(), 3);
        let out = UserCmd::program("sh", &["-c", "kill -9 $$"]).root().run();
        assert_eq!(out.code(), 137);
    }
}
