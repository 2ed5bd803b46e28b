//! `apptainer remote add|remove|use|list|status|login|logout` with `remote.yaml`: the user's
//! `~/.apptainer/remote.yaml` (0600) on top of the admin's `$SYSCONFDIR/remote.yaml`, and
//! `remote login|logout docker://...` sharing the registry logins of `apptainer registry`.
//! The tests use the second test user's own files, one at a time.

use apptainer_tests::{
    account, installed, prefix, require, serial, tempdir_for, test_user_exists, Out, UserCmd,
    TEST_USER2,
};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const REG: &str = "127.0.0.1:5001";
const ALICE_PW: &str = "Alice-pw-7f2e9c";

fn ready() -> bool {
    installed() && test_user_exists() && account(TEST_USER2).is_some()
}

fn user_remote_yaml() -> PathBuf {
    account(TEST_USER2)
        .unwrap()
        .home
        .join(".apptainer/remote.yaml")
}

fn remote(args: &[&str], stdin: Option<&str>) -> Out {
    let mut full = vec!["remote"];
    full.extend_from_slice(args);
    let mut cmd = UserCmd::new(&full).user(TEST_USER2);
    if let Some(s) = stdin {
        cmd = cmd.stdin(s.as_bytes().to_vec());
    }
    cmd.run()
}

#[track_caller]
fn assert_one_error(out: &Out, expect: &str) {
    out.assert_one_error(expect);
}

/// The row of `remote list` for `name`, split in columns.
fn row(list: &Out, name: &str) -> Option<Vec<String>> {
    list.stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(name))
}

#[test]
fn add_use_list_remove_round_trip() {
    require!(
        ready(),
        "installed apptainer and test users (scripts/test-setup.sh)"
    );
    let _guard = serial();
    let _ = std::fs::remove_file(user_remote_yaml());
    let out = remote(&["add", "lab", "https://cloud.lab.example/"], None);
    out.assert_success();
    assert!(out.stderr.contains("Remote \"lab\" added."), "{out:?}");
    assert!(out.stderr.contains("Remote \"lab\" now in use."), "{out:?}");
    remote(&["add", "--no-default", "spare", "spare.example"], None).assert_success();
    assert_eq!(
        std::fs::metadata(user_remote_yaml()).unwrap().mode() & 0o777,
        0o600
    );

    let list = remote(&["list"], None);
    list.assert_success();
    assert_eq!(
        row(&list, "lab").unwrap(),
        ["lab", "cloud.lab.example", "YES", "NO", "NO", "NO"],
        "{list:?}"
    );
    assert_eq!(row(&list, "spare").unwrap()[2], "NO", "{list:?}");

    remote(&["use", "spare"], None).assert_success();
    let list = remote(&["list"], None);
    assert_eq!(row(&list, "spare").unwrap()[2], "YES", "{list:?}");
    assert_eq!(row(&list, "lab").unwrap()[2], "NO", "{list:?}");
    let yaml = std::fs::read_to_string(user_remote_yaml()).unwrap();
    assert!(yaml.contains("Active: spare"), "{yaml}");
    assert!(yaml.contains("URI: cloud.lab.example"), "{yaml}");

    assert_one_error(
        &remote(&["add", "lab", "x.example"], None),
        "already exists",
    );
    remote(&["remove", "lab"], None).assert_success();
    remote(&["remove", "spare"], None).assert_success();
    let list = remote(&["list"], None);
    assert!(
        row(&list, "lab").is_none() && row(&list, "spare").is_none(),
        "{list:?}"
    );
}

#[test]
fn unknown_remote_is_one_line() {
    require!(
        ready(),
        "installed apptainer and test users (scripts/test-setup.sh)"
    );
    let _guard = serial();
    for args in [
        vec!["use", "no-such-remote"],
        vec!["remove", "no-such-remote"],
        vec!["status", "no-such-remote"],
        vec!["login", "-p", "tok", "no-such-remote"],
    ] {
        assert_one_error(&remote(&args, None), "remote no-such-remote not found");
    }
}

/// Puts a system remote.yaml in place for the test, and removes it after.
struct SystemRemotes(PathBuf);

impl SystemRemotes {
    fn install(text: &str) -> Option<SystemRemotes> {
        let path = prefix().join("etc/apptainer/remote.yaml");
        if path.exists() {
            return None;
        }
        std::fs::write(&path, text).unwrap();
        Some(SystemRemotes(path))
    }
}

impl Drop for SystemRemotes {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn system_remotes_are_listed_under_the_users() {
    require!(
        ready(),
        "installed apptainer and test users (scripts/test-setup.sh)"
    );
    let _guard = serial();
    let _ = std::fs::remove_file(user_remote_yaml());
    let Some(_sys) = SystemRemotes::install(
        "Active: site\nRemotes:\n  site:\n    URI: cloud.site.example\n    System: true\n    Exclusive: false\n",
    ) else {
        panic!("a system remote.yaml already exists under {}", prefix().display());
    };
    let list = remote(&["list"], None);
    list.assert_success();
    assert_eq!(
        row(&list, "site").unwrap(),
        ["site", "cloud.site.example", "YES", "YES", "NO", "NO"],
        "{list:?}"
    );
    assert_one_error(&remote(&["remove", "site"], None), "system remote");
    remote(&["add", "mine", "mine.example"], None).assert_success();
    let list = remote(&["list"], None);
    assert_eq!(row(&list, "mine").unwrap()[2], "YES", "{list:?}");
    assert_eq!(row(&list, "site").unwrap()[2], "NO", "{list:?}");
    remote(&["use", "site"], None).assert_success();
    let list = remote(&["list"], None);
    assert_eq!(row(&list, "site").unwrap()[2], "YES", "{list:?}");
    remote(&["remove", "mine"], None).assert_success();
    let _ = std::fs::remove_file(user_remote_yaml());
}

#[test]
fn remote_login_to_a_registry_is_a_registry_login() {
    require!(
        ready()
            && Path::new("/var/lib/apptainer-test/registry-auth/htpasswd").is_file()
            && TcpStream::connect(REG).is_ok(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let _guard = serial();
    let uri = format!("docker://{REG}");
    let out = remote(
        &["login", "-u", "alice", "--password-stdin", &uri],
        Some(&format!("{ALICE_PW}\n")),
    );
    out.assert_success();
    assert!(!out.stderr.contains(ALICE_PW), "{out:?}");
    let list = remote(&["list"], None);
    assert!(list.stdout.contains("Authenticated Logins"), "{list:?}");
    assert!(list.stdout.contains(&uri), "{list:?}");
    let reg_list = UserCmd::new(&["registry", "list"]).user(TEST_USER2).run();
    assert!(reg_list.stdout.contains(&uri), "{reg_list:?}");
    let dir = tempdir_for(TEST_USER2);
    UserCmd::new(&[
        "pull",
        "out.sif",
        "docker://127.0.0.1:5001/private/busybox:latest",
    ])
    .user(TEST_USER2)
    .cwd(dir.path())
    .env("DOCKER_CONFIG", dir.path().join("none"))
    .run()
    .assert_success();
    let out = remote(&["logout", &uri], None);
    out.assert_success();
    assert!(out.stderr.contains("Logout succeeded"), "{out:?}");
    let list = remote(&["list"], None);
    assert!(!list.stdout.contains(&uri), "{list:?}");
}

#[test]
fn status_and_token_login_of_an_endpoint() {
    require!(
        ready() && TcpStream::connect(REG).is_ok(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let _guard = serial();
    let _ = std::fs::remove_file(user_remote_yaml());
    remote(&["add", "near", REG], None).assert_success();
    remote(&["add", "--no-default", "far", "127.0.0.1:5999"], None).assert_success();
    let out = remote(&["status"], None);
    out.assert_success();
    assert!(out.stdout.contains("reachable"), "{out:?}");
    assert!(out.stdout.contains("logged out"), "{out:?}");
    assert_one_error(
        &remote(&["status", "far"], None),
        "cannot reach 127.0.0.1:5999",
    );

    let dir = tempdir_for(TEST_USER2);
    let tokenfile = dir.path().join("token");
    std::fs::write(&tokenfile, "secret-token-value\n").unwrap();
    let acct = account(TEST_USER2).unwrap();
    std::os::unix::fs::chown(&tokenfile, Some(acct.uid), Some(acct.gid)).unwrap();
    let out = remote(
        &["login", "--tokenfile", tokenfile.to_str().unwrap(), "near"],
        None,
    );
    out.assert_success();
    assert!(!out.stderr.contains("secret-token-value"), "{out:?}");
    let out = remote(&["status", "near"], None);
    assert!(out.stdout.contains("logged in"), "{out:?}");
    assert!(!out.stdout.contains("secret-token-value"), "{out:?}");
    assert_eq!(
        std::fs::metadata(user_remote_yaml()).unwrap().mode() & 0o777,
        0o600
    );
    remote(&["logout", "near"], None).assert_success();
    assert_one_error(&remote(&["logout", "near"], None), "not logged in");
    let _ = std::fs::remove_file(user_remote_yaml());
}
