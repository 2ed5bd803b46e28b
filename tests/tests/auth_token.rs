//! Bearer token auth against Debian's docker-registry configured with `auth: token`
//! (127.0.0.1:5002, TLS from the private CA), whose tokens come from the token server in the
//! test crate (`apptainer_tests::token_server`, started by this test process). The client
//! must follow the `WWW-Authenticate: Bearer realm=..,service=..,scope=..` challenge, send the
//! user's credentials to the realm only, ask for `pull,push` when it pushes, fetch a new
//! token when the registry refuses the one it has, and fail in one clear line when the token
//! server refuses it or the registry refuses the token.

use apptainer_tests::registries::{
    no_stored_logins, shared_busybox_sif, with_creds, ALICE_PW, BOB_PW, MALLORY_PW, WRONG_PW,
};
use apptainer_tests::{
    installed, require, tempdir_for, test_user_exists, token_server, user_tempdir, Out, UserCmd,
    TEST_USER2,
};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

fn ready() -> bool {
    installed()
        && test_user_exists()
        && token_server::configured()
        && TcpStream::connect(token_server::REGISTRY).is_ok()
        && token_server::ensure().is_ok()
}

/// Runs apptainer as `user` in `dir` with registry credentials in the environment and no
/// stored logins.
fn as_user(user: &str, dir: &Path, creds: Option<(&str, &str)>, args: &[&str]) -> Out {
    let cmd = no_stored_logins(UserCmd::new(args).user(user).cwd(dir), dir);
    with_creds(cmd, creds).run()
}

/// `pull out.sif URI` as the test user fails in one line naming `expect`, leaving no file.
#[track_caller]
fn refused_pull(dir: &Path, creds: Option<(&str, &str)>, uri: &str, expect: &str) {
    let out = as_user(
        apptainer_tests::TEST_USER,
        dir,
        creds,
        &["pull", "out.sif", uri],
    );
    assert_one_error(&out, expect);
    assert!(!dir.join("out.sif").exists());
}

#[track_caller]
fn assert_one_error(out: &Out, expect: &str) {
    out.assert_one_error(expect)
        .assert_no_secret(&[ALICE_PW, BOB_PW, MALLORY_PW, WRONG_PW]);
}

/// A small SIF (the busybox fixture converted once) readable by both test users.
fn sample_sif() -> PathBuf {
    shared_busybox_sif(Path::new("/var/tmp/apptainer-test-auth-token"))
}

#[test]
fn docker_pull_follows_the_bearer_challenge() {
    require!(ready(), "token registry (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    let before = token_server::requests();
    let out = as_user(
        apptainer_tests::TEST_USER,
        dir.path(),
        Some(("bob", BOB_PW)),
        &[
            "pull",
            "out.sif",
            "docker://127.0.0.1:5002/private/busybox:latest",
        ],
    );
    out.assert_success();
    assert!(dir.path().join("out.sif").is_file(), "{out:?}");
    assert!(token_server::requests() > before, "no token was requested");
}

#[test]
fn anonymous_token_has_no_access() {
    require!(ready(), "token registry (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    refused_pull(
        dir.path(),
        None,
        "docker://127.0.0.1:5002/private/busybox:latest",
        "127.0.0.1:5002",
    );
}

#[test]
fn wrong_password_at_the_token_server_is_one_line() {
    require!(ready(), "token registry (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    refused_pull(
        dir.path(),
        Some(("alice", WRONG_PW)),
        "oras://127.0.0.1:5002/private/anything:1",
        "wrong username or password",
    );
}

#[test]
fn invalid_token_is_refetched_then_reported() {
    require!(ready(), "token registry (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    let before = token_server::requests();
    refused_pull(
        dir.path(),
        Some(("mallory", MALLORY_PW)),
        "oras://127.0.0.1:5002/private/anything:1",
        "127.0.0.1:5002 refused the access token",
    );
    assert!(token_server::requests() > before, "no token was requested");
}

#[test]
fn oras_push_needs_push_scope_and_another_user_pulls_it() {
    require!(ready(), "token registry (scripts/auth-registry-setup.sh)");
    let sif = sample_sif();
    let uri = "oras://127.0.0.1:5002/private/token-oras:v1";
    // bob may only pull: the registry refuses his upload.
    let dir = user_tempdir();
    let out = as_user(
        apptainer_tests::TEST_USER,
        dir.path(),
        Some(("bob", BOB_PW)),
        &[
            "push",
            sif.to_str().unwrap(),
            "oras://127.0.0.1:5002/private/bob-cannot:v1",
        ],
    );
    assert_one_error(&out, "127.0.0.1:5002 refused the access token");
    // alice pushes (pull,push scope), bob pulls as the second user.
    let out = as_user(
        apptainer_tests::TEST_USER,
        dir.path(),
        Some(("alice", ALICE_PW)),
        &["push", sif.to_str().unwrap(), uri],
    );
    out.assert_success();
    let dir2 = tempdir_for(TEST_USER2);
    let out = as_user(
        TEST_USER2,
        dir2.path(),
        Some(("bob", BOB_PW)),
        &["pull", "copy.sif", uri],
    );
    out.assert_success();
    let pushed = std::fs::read(&sif).unwrap();
    let pulled = std::fs::read(dir2.path().join("copy.sif")).unwrap();
    assert!(pushed == pulled, "pulled SIF differs from the pushed one");
}
