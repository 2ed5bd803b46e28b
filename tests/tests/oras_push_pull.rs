//! `apptainer push IMAGE.sif oras://...` and `apptainer pull oras://...` against the htpasswd
//! TLS registry (127.0.0.1:5001) and the plain-HTTP one (127.0.0.1:5000): the artifact has the
//! reference's manifest shape, another user pulls a byte-identical SIF, the pulled SIF is
//! cached by digest, and bad input (not a SIF, unknown tag, an image that is not a SIF
//! artifact, a wrong pinned digest) fails in one line without leaving a file.

use apptainer_tests::registries::{
    auth_registry_ready, no_stored_logins, shared_busybox_sif, with_creds, ALICE_PW, AUTH_REGISTRY,
    BOB_PW,
};
use apptainer_tests::{
    registry_up, require, tempdir_for, user_tempdir, Out, UserCmd, TEST_USER, TEST_USER2,
};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const REG: &str = AUTH_REGISTRY;

fn ready() -> bool {
    auth_registry_ready() && registry_up()
}

/// A small SIF (the busybox fixture converted once) readable by both test users.
fn sample_sif() -> PathBuf {
    shared_busybox_sif(Path::new("/var/tmp/apptainer-test-oras"))
}

fn as_user(user: &str, dir: &Path, creds: Option<(&str, &str)>, args: &[&str]) -> Out {
    let cmd = no_stored_logins(UserCmd::new(args).user(user).cwd(dir), dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"));
    with_creds(cmd, creds).run()
}

/// `pull out.sif URI` as the test user fails in one line naming `expect`, leaving no file.
#[track_caller]
fn refused_pull(dir: &Path, creds: Option<(&str, &str)>, uri: &str, expect: &str) {
    let out = as_user(TEST_USER, dir, creds, &["pull", "out.sif", uri]);
    assert_one_error(&out, expect);
    assert!(!dir.join("out.sif").exists());
}

#[track_caller]
fn assert_one_error(out: &Out, expect: &str) {
    out.assert_one_error(expect);
    assert!(!out.stderr.contains(ALICE_PW) && !out.stderr.contains(BOB_PW));
}

/// The manifest as the registry serves it, fetched with curl (independent of our client).
fn registry_manifest(repo_tag: &str) -> (serde_json::Value, String) {
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let out = Command::new("curl")
        .args(["-fsS", "-u", &format!("alice:{ALICE_PW}"), "-D", "-"])
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("https://{REG}/v2/{repo}/manifests/{tag}"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let digest = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("docker-content-digest: ")
                .map(|d| d.trim().to_string())
        })
        .expect("digest header");
    (serde_json::from_str(body).unwrap(), digest)
}

#[test]
fn push_then_another_user_pulls_the_same_bytes() {
    require!(ready(), "auth registries (scripts/auth-registry-setup.sh)");
    let sif = sample_sif();
    let dir = user_tempdir();
    let uri = "oras://127.0.0.1:5001/private/oras-roundtrip:v1";
    let out = as_user(
        TEST_USER,
        dir.path(),
        Some(("alice", ALICE_PW)),
        &["push", sif.to_str().unwrap(), uri],
    );
    out.assert_success();

    let (manifest, digest) = registry_manifest("private/oras-roundtrip:v1");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.sylabs.sif.config.v1+json"
    );
    assert_eq!(manifest["config"]["size"], 2);
    let data = manifest["config"]["data"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        b"{}"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.sylabs.sif.layer.v1.sif"
    );
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "busybox.sif"
    );
    let pushed = std::fs::read(&sif).unwrap();
    assert_eq!(layers[0]["size"], pushed.len() as u64);

    let dir2 = tempdir_for(TEST_USER2);
    let out = as_user(
        TEST_USER2,
        dir2.path(),
        Some(("bob", BOB_PW)),
        &["pull", uri],
    );
    out.assert_success();
    let pulled = std::fs::read(dir2.path().join("oras-roundtrip_v1.sif")).unwrap();
    assert!(pushed == pulled, "pulled SIF differs from the pushed one");

    // Cached by digest: the second pull does not download, and a pinned digest works.
    let pinned = format!("oras://127.0.0.1:5001/private/oras-roundtrip@{digest}");
    let out = as_user(
        TEST_USER2,
        dir2.path(),
        Some(("bob", BOB_PW)),
        &["pull", "pinned.sif", &pinned],
    );
    out.assert_success();
    assert!(out.stderr.contains("Using cached image"), "{out:?}");
    assert!(std::fs::read(dir2.path().join("pinned.sif")).unwrap() == pushed);
}

#[test]
fn plain_http_loopback_registry_round_trip() {
    require!(ready(), "local registry (scripts/test-setup.sh)");
    let sif = sample_sif();
    let dir = user_tempdir();
    let uri = "oras://127.0.0.1:5000/test/oras-plain:v1";
    as_user(
        TEST_USER,
        dir.path(),
        None,
        &["push", "--no-https", sif.to_str().unwrap(), uri],
    )
    .assert_success();
    as_user(TEST_USER, dir.path(), None, &["pull", "out.sif", uri]).assert_success();
    assert!(std::fs::read(dir.path().join("out.sif")).unwrap() == std::fs::read(&sif).unwrap());
}

#[test]
fn pushing_a_file_that_is_not_a_sif_is_refused() {
    require!(ready(), "auth registries (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    let bogus = dir.path().join("bogus.sif");
    std::fs::write(&bogus, b"#!/bin/sh\necho not a sif\n").unwrap();
    let out = as_user(
        TEST_USER,
        dir.path(),
        Some(("alice", ALICE_PW)),
        &[
            "push",
            bogus.to_str().unwrap(),
            "oras://127.0.0.1:5001/private/bogus:v1",
        ],
    );
    assert_one_error(&out, "is not a SIF image");
}

#[test]
fn unknown_tag_leaves_no_file() {
    require!(ready(), "auth registries (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    refused_pull(
        dir.path(),
        Some(("alice", ALICE_PW)),
        "oras://127.0.0.1:5001/private/never-pushed:v9",
        "manifest unknown",
    );
}

#[test]
fn an_image_that_is_not_a_sif_artifact_is_refused() {
    require!(ready(), "auth registries (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    refused_pull(
        dir.path(),
        Some(("alice", ALICE_PW)),
        "oras://127.0.0.1:5001/private/busybox:latest",
        "not a SIF artifact",
    );
}

#[test]
fn push_without_credentials_asks_for_a_login() {
    require!(ready(), "auth registries (scripts/auth-registry-setup.sh)");
    let sif = sample_sif();
    let dir = user_tempdir();
    let out = as_user(
        TEST_USER,
        dir.path(),
        None,
        &[
            "push",
            sif.to_str().unwrap(),
            "oras://127.0.0.1:5001/private/anon:v1",
        ],
    );
    assert_one_error(&out, "requires authentication");
}

/// The registry's architecture name for this machine.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn an_index_of_sif_artifacts_resolves_to_the_host_architecture() {
    require!(ready(), "local registry (scripts/test-setup.sh)");
    let sif = sample_sif();
    let dir = user_tempdir();
    let base = "127.0.0.1:5000/test/oras-index";
    as_user(
        TEST_USER,
        dir.path(),
        None,
        &[
            "push",
            sif.to_str().unwrap(),
            &format!("oras://{base}:single"),
        ],
    )
    .assert_success();
    // The manifest just pushed, then an index naming it for this architecture (and a
    // decoy for another one), put in place with curl.
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let out = Command::new("curl")
        .args(["-fsS", "-D", "-", "-o", "/dev/null", "-H", accept])
        .arg("http://127.0.0.1:5000/v2/test/oras-index/manifests/single")
        .output()
        .unwrap();
    assert!(out.status.success());
    let head = String::from_utf8(out.stdout).unwrap().to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    let digest = header("docker-content-digest:");
    let size: u64 = header("content-length:").parse().unwrap();
    let other_arch = if host_arch() == "amd64" {
        "riscv64"
    } else {
        "amd64"
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
             "platform": {"os": "linux", "architecture": host_arch()}},
        ],
    });
    let put = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.index.v1+json")
        .args(["--data-binary", &index.to_string()])
        .arg("http://127.0.0.1:5000/v2/test/oras-index/manifests/multi")
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    as_user(
        TEST_USER,
        dir.path(),
        None,
        &["pull", "out.sif", &format!("oras://{base}:multi")],
    )
    .assert_success();
    assert!(std::fs::read(dir.path().join("out.sif")).unwrap() == std::fs::read(&sif).unwrap());
}

#[test]
fn a_new_blob_streams_in_one_patch_and_round_trips() {
    require!(ready(), "auth registries (scripts/auth-registry-setup.sh)");
    let dir = user_tempdir();
    // `sif new` gives each file its own UUID: a blob the registry has never seen.
    let sif = dir.path().join("fresh.sif");
    UserCmd::new(&["sif", "new", sif.to_str().unwrap()])
        .cwd(dir.path())
        .run()
        .assert_success();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let repo = format!("private/fresh-{nanos}");
    let uri = format!("oras://{REG}/{repo}:v1");
    as_user(
        TEST_USER,
        dir.path(),
        Some(("alice", ALICE_PW)),
        &["push", sif.to_str().unwrap(), &uri],
    )
    .assert_success();
    let log = std::fs::read_to_string("/var/lib/apptainer-test/registry-auth/basic.log").unwrap();
    assert!(
        log.contains(&format!("\"PATCH /v2/{repo}/blobs/uploads/")),
        "no streamed upload in the registry log"
    );
    let dir2 = tempdir_for(TEST_USER2);
    as_user(
        TEST_USER2,
        dir2.path(),
        Some(("bob", BOB_PW)),
        &["pull", "got.sif", &uri],
    )
    .assert_success();
    assert!(std::fs::read(dir2.path().join("got.sif")).unwrap() == std::fs::read(&sif).unwrap());
}
