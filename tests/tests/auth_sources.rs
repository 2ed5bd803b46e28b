//! Every credential source against the htpasswd (Basic) registry behind TLS on
//! 127.0.0.1:5001 that scripts/auth-registry-setup.sh starts, with a certificate from the
//! private CA it installed in the system trust store (no flag makes TLS work): the
//! environment (`APPTAINER_DOCKER_*`, then `DOCKER_*`), the hidden flags, `--docker-login`,
//! `--authfile`, and `~/.docker/config.json` (through `DOCKER_CONFIG`, so tests do not share
//! one file), with their precedence, and the failures: no credentials, a wrong password
//! (never printed), an untrusted certificate, an unreachable host.

use apptainer_tests::registries::{
    auth_registry_ready, no_stored_logins, ALICE_PW, AUTH_REGISTRY, PRIVATE_IMAGE, WRONG_PW,
};
use apptainer_tests::{require, user_tempdir, Out, UserCmd};
use base64::Engine as _;
use std::path::{Path, PathBuf};

const REG: &str = AUTH_REGISTRY;
const IMAGE: &str = PRIVATE_IMAGE;
const NEEDS: &str = "auth registries (scripts/auth-registry-setup.sh)";
/// The right credentials in the environment.
const ALICE_ENV: [(&str, &str); 2] = [
    ("APPTAINER_DOCKER_USERNAME", "alice"),
    ("APPTAINER_DOCKER_PASSWORD", ALICE_PW),
];
/// A wrong password in the environment.
const WRONG_ENV: [(&str, &str); 2] = [
    ("APPTAINER_DOCKER_USERNAME", "alice"),
    ("APPTAINER_DOCKER_PASSWORD", WRONG_PW),
];

/// `apptainer pull` of the private image into `dir` with extra env pairs.
fn pull(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Out {
    let mut args = vec!["pull"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["out.sif", IMAGE]);
    let mut cmd = no_stored_logins(UserCmd::new(&args).cwd(dir), dir);
    for (k, v) in env {
        cmd = cmd.env(*k, *v);
    }
    cmd.run()
}

/// A trust store without the test CA (the token registry's own certificate), so the
/// htpasswd registry's certificate is not trusted.
fn other_ca(dir: &Path) -> PathBuf {
    let other = dir.join("other-ca.pem");
    std::fs::copy(
        "/var/lib/apptainer-test/registry-auth/token/cert.pem",
        &other,
    )
    .unwrap();
    other
}

#[track_caller]
fn assert_pulled(out: &Out, dir: &Path) {
    out.assert_success();
    let sif = std::fs::read(dir.join("out.sif")).expect("out.sif written");
    assert!(sif.len() > 4096, "{out:?}");
}

/// One error line naming `expect`, no secret anywhere, no output file.
#[track_caller]
fn assert_refused(out: &Out, dir: &Path, expect: &str) {
    out.assert_one_error(expect)
        .assert_no_secret(&[ALICE_PW, WRONG_PW]);
    assert!(!dir.join("out.sif").exists(), "partial output left");
}

#[test]
fn anonymous_pull_is_refused_with_a_hint() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(dir.path(), &[], &[]);
    assert_refused(&out, dir.path(), REG);
    assert!(out.stderr.contains("registry login"), "{out:?}");
}

#[test]
fn apptainer_docker_env_credentials_work() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(dir.path(), &[], &ALICE_ENV);
    assert_pulled(&out, dir.path());
}

#[test]
fn unprefixed_docker_env_credentials_are_the_fallback() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(
        dir.path(),
        &[],
        &[("DOCKER_USERNAME", "alice"), ("DOCKER_PASSWORD", ALICE_PW)],
    );
    assert_pulled(&out, dir.path());
}

#[test]
fn apptainer_env_overrides_docker_env() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(
        dir.path(),
        &[],
        &[
            ("DOCKER_USERNAME", "alice"),
            ("DOCKER_PASSWORD", WRONG_PW),
            ("APPTAINER_DOCKER_USERNAME", "alice"),
            ("APPTAINER_DOCKER_PASSWORD", ALICE_PW),
        ],
    );
    assert_pulled(&out, dir.path());
}

#[test]
fn hidden_flags_carry_credentials() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(
        dir.path(),
        &["--docker-username", "alice", "--docker-password", ALICE_PW],
        &[],
    );
    assert_pulled(&out, dir.path());
}

#[test]
fn docker_login_prompts_for_username_and_password() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = no_stored_logins(
        UserCmd::new(&["pull", "--docker-login", "out.sif", IMAGE]),
        dir.path(),
    )
    .cwd(dir.path())
    .stdin(format!("alice\n{ALICE_PW}\n"))
    .run();
    assert_pulled(&out, dir.path());
    assert!(out.stderr.contains("Enter Docker Username:"), "{out:?}");
    assert!(out.stderr.contains("Enter Docker Password:"), "{out:?}");
    assert!(!out.stderr.contains(ALICE_PW), "password echoed: {out:?}");
}

#[test]
fn docker_login_beats_the_environment() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = no_stored_logins(
        UserCmd::new(&["pull", "--docker-login", "out.sif", IMAGE]),
        dir.path(),
    )
    .cwd(dir.path())
    .envs(ALICE_ENV)
    .stdin(format!("alice\n{WRONG_PW}\n"))
    .run();
    assert_refused(&out, dir.path(), REG);
}

/// Writes a docker config with `entry` for the registry, owned by the test user.
fn docker_config(dir: &Path, entry: serde_json::Value) -> std::path::PathBuf {
    let cfg_dir = dir.join("dockercfg");
    std::fs::create_dir(&cfg_dir).unwrap();
    let doc = serde_json::json!({ "auths": { format!("https://{REG}"): entry } });
    std::fs::write(cfg_dir.join("config.json"), doc.to_string()).unwrap();
    let acct = apptainer_tests::test_account();
    for p in [cfg_dir.clone(), cfg_dir.join("config.json")] {
        std::os::unix::fs::chown(&p, Some(acct.uid), Some(acct.gid)).unwrap();
    }
    cfg_dir
}

#[test]
fn docker_config_base64_auth_entry_works() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{ALICE_PW}"));
    let cfg = docker_config(dir.path(), serde_json::json!({ "auth": auth }));
    let out = pull(dir.path(), &[], &[("DOCKER_CONFIG", cfg.to_str().unwrap())]);
    assert_pulled(&out, dir.path());
}

#[test]
fn docker_config_username_password_entry_works() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let cfg = docker_config(
        dir.path(),
        serde_json::json!({ "username": "alice", "password": ALICE_PW }),
    );
    let out = pull(dir.path(), &[], &[("DOCKER_CONFIG", cfg.to_str().unwrap())]);
    assert_pulled(&out, dir.path());
}

#[test]
fn authfile_credentials_work_and_env_overrides_them() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let authfile = dir.path().join("auth.json");
    let login = UserCmd::new(&[
        "registry",
        "login",
        "--authfile",
        authfile.to_str().unwrap(),
        "-u",
        "alice",
        "--password-stdin",
        &format!("docker://{REG}"),
    ])
    .stdin(format!("{ALICE_PW}\n"))
    .run();
    login.assert_success();
    let out = pull(dir.path(), &["--authfile", authfile.to_str().unwrap()], &[]);
    assert_pulled(&out, dir.path());
    std::fs::remove_file(dir.path().join("out.sif")).unwrap();
    let out = pull(
        dir.path(),
        &["--authfile", authfile.to_str().unwrap()],
        &WRONG_ENV,
    );
    assert_refused(&out, dir.path(), REG);
}

#[test]
fn wrong_password_is_one_line_without_the_password() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(dir.path(), &[], &WRONG_ENV);
    assert_refused(
        &out,
        dir.path(),
        "127.0.0.1:5001 refused the credentials of user \"alice\"",
    );
}

#[test]
fn half_set_credentials_are_an_error() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(dir.path(), &[], &[("APPTAINER_DOCKER_USERNAME", "alice")]);
    assert_refused(&out, dir.path(), "APPTAINER_DOCKER_PASSWORD");
}

#[test]
fn untrusted_certificate_names_the_host() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    // A trust store without the test CA: the registry's certificate is not trusted.
    let other = other_ca(dir.path());
    let out = UserCmd::new(&["pull", "out.sif", "oras://127.0.0.1:5001/private/nothing:1"])
        .cwd(dir.path())
        .env("SSL_CERT_FILE", &other)
        .envs(ALICE_ENV)
        .run();
    assert_refused(&out, dir.path(), REG);
    assert!(out.stderr.contains("certificate"), "{out:?}");
}

#[test]
fn unreachable_registry_is_one_line() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = UserCmd::new(&["pull", "out.sif", "oras://127.0.0.1:5999/private/x:1"])
        .cwd(dir.path())
        .run();
    assert_refused(&out, dir.path(), "cannot reach registry 127.0.0.1:5999");
}

#[test]
fn exec_of_a_private_image_uses_environment_credentials() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = no_stored_logins(
        UserCmd::new(&["exec", IMAGE, "echo", "hello-from-private"]),
        dir.path(),
    )
    .cwd(dir.path())
    .envs(ALICE_ENV)
    .run();
    out.assert_success();
    assert!(out.stdout.contains("hello-from-private"), "{out:?}");
    let anon = no_stored_logins(UserCmd::new(&["exec", IMAGE, "true"]), dir.path())
        .cwd(dir.path())
        .run();
    anon.assert_failure();
    assert!(anon.stderr.contains(REG), "{anon:?}");
}

#[test]
fn docker_pull_with_an_untrusted_certificate_names_the_host() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let other = other_ca(dir.path());
    let out = pull(
        dir.path(),
        &[],
        &[
            ("SSL_CERT_FILE", other.to_str().unwrap()),
            ("APPTAINER_DOCKER_USERNAME", "alice"),
            ("APPTAINER_DOCKER_PASSWORD", ALICE_PW),
        ],
    );
    assert_refused(&out, dir.path(), REG);
    assert!(out.stderr.contains("certificate"), "{out:?}");
}

#[test]
fn debug_output_never_shows_the_password() {
    require!(auth_registry_ready(), NEEDS);
    let dir = user_tempdir();
    let out = pull(
        dir.path(),
        &[],
        &[
            ("APPTAINER_DEBUG", "1"),
            ("APPTAINER_DOCKER_USERNAME", "alice"),
            ("APPTAINER_DOCKER_PASSWORD", ALICE_PW),
        ],
    );
    assert_pulled(&out, dir.path());
    assert!(out.stderr.contains("DEBUG"), "no debug output: {out:?}");
    assert!(
        !out.stderr.contains(ALICE_PW) && !out.stdout.contains(ALICE_PW),
        "{out:?}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{ALICE_PW}"));
    assert!(
        !out.stderr.contains(&basic),
        "Authorization header printed: {out:?}"
    );
}
