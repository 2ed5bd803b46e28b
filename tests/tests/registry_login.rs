//! `apptainer registry login|logout|list`: the login is checked against the registry before
//! anything is stored, stored 0600 in `~/.apptainer/docker-config.json` (directory 0700) or
//! the `--authfile`, used by later pulls, and forgotten by logout. Stored logins beat
//! `~/.docker/config.json`, which still serves registries they do not cover. Tests that use
//! the test user's own files run one at a time and log out when done.

use apptainer_tests::registries::{
    auth_registry_ready, ALICE_PW, AUTH_REGISTRY, PRIVATE_IMAGE, WRONG_PW,
};
use apptainer_tests::{
    installed, require, serial, test_account, test_user_exists, token_server, user_tempdir, Out,
    UserCmd,
};
use base64::Engine as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const REG: &str = AUTH_REGISTRY;
const IMAGE: &str = PRIVATE_IMAGE;

fn apptainer(dir: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = UserCmd::new(args)
        .cwd(dir)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"));
    if let Some(s) = stdin {
        cmd = cmd.stdin(s.as_bytes().to_vec());
    }
    cmd.run()
}

/// `registry login --authfile AUTHFILE -u alice --password-stdin URI` with `password`.
fn login_alice(dir: &Path, authfile: &str, uri: &str, password: &str) -> Out {
    let stdin = format!("{password}\n");
    apptainer(
        dir,
        &[
            "registry",
            "login",
            "--authfile",
            authfile,
            "-u",
            "alice",
            "--password-stdin",
            uri,
        ],
        Some(&stdin),
    )
}

#[track_caller]
fn assert_no_secret(out: &Out) {
    out.assert_no_secret(&[ALICE_PW, WRONG_PW]);
}

#[track_caller]
fn assert_one_error(out: &Out, expect: &str) {
    out.assert_one_error(expect);
    assert_no_secret(out);
}

#[test]
fn login_list_pull_logout_round_trip() {
    require!(
        auth_registry_ready(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let _guard = serial();
    let dir = user_tempdir();
    let home = test_account().home;
    let cfg = home.join(".apptainer/docker-config.json");
    let uri = format!("docker://{REG}");
    let out = apptainer(
        dir.path(),
        &["registry", "login", "-u", "alice", "--password-stdin", &uri],
        Some(&format!("{ALICE_PW}\n")),
    );
    out.assert_success();
    assert!(out.stderr.contains("Token stored in"), "{out:?}");
    assert_no_secret(&out);
    assert_eq!(std::fs::metadata(&cfg).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(home.join(".apptainer")).unwrap().mode() & 0o077,
        0,
        "~/.apptainer is open to others"
    );
    let list = apptainer(dir.path(), &["registry", "list"], None);
    list.assert_success();
    assert!(list.stdout.contains(&format!("docker://{REG}")), "{list:?}");
    assert!(list.stdout.contains("alice"), "{list:?}");
    assert_no_secret(&list);

    let pulled = apptainer(dir.path(), &["pull", "out.sif", IMAGE], None);
    pulled.assert_success();

    let out = apptainer(dir.path(), &["registry", "logout", &uri], None);
    out.assert_success();
    assert!(out.stderr.contains("Logout succeeded"), "{out:?}");
    let list = apptainer(dir.path(), &["registry", "list"], None);
    assert!(!list.stdout.contains(REG), "{list:?}");
    let again = apptainer(dir.path(), &["pull", "again.sif", IMAGE], None);
    assert_one_error(&again, REG);
    let out = apptainer(dir.path(), &["registry", "logout", &uri], None);
    assert_one_error(&out, "not logged in");
}

#[test]
fn wrong_password_stores_nothing() {
    require!(
        auth_registry_ready(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let dir = user_tempdir();
    let authfile = dir.path().join("auth.json");
    let out = login_alice(
        dir.path(),
        authfile.to_str().unwrap(),
        &format!("docker://{REG}"),
        WRONG_PW,
    );
    assert_one_error(&out, "wrong username or password");
    assert!(
        !authfile.exists(),
        "credentials stored after a refused login"
    );
}

#[test]
fn password_prompt_and_flag_both_work() {
    require!(
        auth_registry_ready(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let dir = user_tempdir();
    let authfile = dir.path().join("auth.json");
    let af = authfile.to_str().unwrap();
    let uri = format!("oras://{REG}");
    let out = apptainer(
        dir.path(),
        &["registry", "login", "--authfile", af, "-u", "alice", &uri],
        Some(&format!("{ALICE_PW}\n")),
    );
    out.assert_success();
    assert!(out.stderr.contains("Password / Token:"), "{out:?}");
    assert_no_secret(&out);
    let out = apptainer(
        dir.path(),
        &[
            "registry",
            "login",
            "--authfile",
            af,
            "-u",
            "alice",
            "-p",
            ALICE_PW,
            &uri,
        ],
        None,
    );
    out.assert_success();
    assert_no_secret(&out);
    let text = std::fs::read_to_string(&authfile).unwrap();
    assert!(!text.contains(ALICE_PW), "password stored in clear: {text}");
    let pulled = apptainer(
        dir.path(),
        &["pull", "--authfile", af, "out.sif", IMAGE],
        None,
    );
    pulled.assert_success();
}

#[test]
fn password_stdin_needs_a_username() {
    require!(
        auth_registry_ready(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let dir = user_tempdir();
    let out = apptainer(
        dir.path(),
        &[
            "registry",
            "login",
            "--password-stdin",
            &format!("docker://{REG}"),
        ],
        Some(&format!("{ALICE_PW}\n")),
    );
    assert_one_error(&out, "--username");
}

/// Writes `{"auths": {host: {"auth": base64(user:pw)}}}` owned by the test user.
fn write_auths(path: &Path, host: &str, user: &str, pw: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    let doc = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::write(path, doc.to_string()).unwrap();
    let acct = test_account();
    for p in [path.parent().unwrap(), path] {
        std::os::unix::fs::chown(p, Some(acct.uid), Some(acct.gid)).unwrap();
    }
}

#[test]
fn stored_login_beats_docker_config_which_still_serves_other_registries() {
    require!(
        auth_registry_ready(),
        "auth registries (scripts/auth-registry-setup.sh)"
    );
    let dir = user_tempdir();
    let authfile = dir.path().join("auth.json");
    let docker_dir = dir.path().join("docker");
    let pull = |name: &str| {
        UserCmd::new(&[
            "pull",
            "--authfile",
            authfile.to_str().unwrap(),
            name,
            IMAGE,
        ])
        .cwd(dir.path())
        .env("DOCKER_CONFIG", &docker_dir)
        .run()
    };
    // Right in the stored file, wrong in Docker's: the stored one wins.
    write_auths(&authfile, REG, "alice", ALICE_PW);
    write_auths(&docker_dir.join("config.json"), REG, "alice", WRONG_PW);
    pull("a.sif").assert_success();
    // Wrong in the stored file: Docker's right one is not consulted for the same registry.
    write_auths(&authfile, REG, "alice", WRONG_PW);
    write_auths(&docker_dir.join("config.json"), REG, "alice", ALICE_PW);
    assert_one_error(&pull("b.sif"), REG);
    // The stored file knows only another registry: Docker's entry serves this one.
    write_auths(&authfile, "quay.io", "someone", "x");
    pull("c.sif").assert_success();
}

#[test]
fn login_through_a_token_realm() {
    require!(
        auth_registry_ready() && token_server::configured() && token_server::ensure().is_ok(),
        "token registry (scripts/auth-registry-setup.sh)"
    );
    let dir = user_tempdir();
    let af = dir.path().join("auth.json");
    let af = af.to_str().unwrap();
    let uri = format!("docker://{}", token_server::REGISTRY);
    let bad = login_alice(dir.path(), af, &uri, WRONG_PW);
    assert_one_error(&bad, "wrong username or password");
    let good = login_alice(dir.path(), af, &uri, ALICE_PW);
    good.assert_success();
    let pulled = apptainer(
        dir.path(),
        &[
            "pull",
            "--authfile",
            af,
            "out.sif",
            "docker://127.0.0.1:5002/private/busybox:latest",
        ],
        None,
    );
    pulled.assert_success();
}

#[test]
fn help_never_shows_passwords_from_the_environment() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user"
    );
    for args in [
        vec!["registry", "login", "--help"],
        vec!["pull", "--help"],
        vec!["push", "--help"],
    ] {
        let out = UserCmd::new(&args)
            .env("APPTAINER_LOGIN_PASSWORD", ALICE_PW)
            .env("APPTAINER_DOCKER_PASSWORD", ALICE_PW)
            .env("DOCKER_PASSWORD", ALICE_PW)
            .run();
        out.assert_success();
        assert_no_secret(&out);
    }
}
