//! `apptainer pull docker://...` against the local registry (127.0.0.1:5000, plain HTTP),
//! as the unprivileged test user through the installed binary. The converted contents are
//! checked independently: the SIF's primary partition is located with the `sif` reader and
//! listed/read with `unsquashfs -o <offset>`.

use apptainer_tests::{
    apptainer_in, docker_ref, fixture_layout, installed, registry_up, require, squashfs_listing,
    test_user_exists, user_tempdir, UserCmd,
};
use std::path::Path;
use std::process::Command;

fn ready() -> bool {
    installed() && test_user_exists() && registry_up()
}

/// The squashfs listing of a SIF's primary partition (paths relative to the root).
fn sif_listing(sif: &Path) -> Vec<String> {
    squashfs_listing(sif, partition_offset(sif))
}

/// One file's content from a SIF's primary partition.
fn sif_cat(sif: &Path, path: &str) -> String {
    let offset = partition_offset(sif);
    let out = Command::new("unsquashfs")
        .args(["-cat", "-o", &offset.to_string()])
        .arg(sif)
        .arg(path)
        .output()
        .expect("run unsquashfs");
    assert!(
        out.status.success(),
        "unsquashfs -cat {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn partition_offset(sif: &Path) -> u64 {
    let mut f = std::fs::File::open(sif).unwrap_or_else(|e| panic!("open {}: {e}", sif.display()));
    sif::primary_partition(&mut f)
        .unwrap_or_else(|e| {
            panic!(
                "{} is not a SIF with a primary partition: {e}",
                sif.display()
            )
        })
        .offset
}

/// The manifest digest of a fixture tag, from its OCI layout (the registry's manifests are
/// byte-identical to the layout's).
fn fixture_manifest_digest(name: &str, tag: &str) -> String {
    let index = std::fs::read_to_string(fixture_layout(name).join("index.json"))
        .expect("fixture index.json");
    let v: serde_json::Value = serde_json::from_str(&index).expect("index.json parses");
    v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no {name}:{tag} in the fixture layout"))
        .to_string()
}

fn oci_tmp_entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("cachedir/cache/oci-tmp")) {
        Ok(r) => r
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn pull_by_tag_writes_name_tag_sif_with_the_image_contents() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("busybox:latest")],
    );
    out.assert_success();
    assert!(
        out.stderr
            .contains("INFO:    Converting OCI blobs to SIF format"),
        "{out:?}"
    );
    let sif = tmp.path().join("busybox_latest.sif");
    let listing = sif_listing(&sif);
    for want in [
        "bin/busybox",
        "etc/passwd",
        "usr/bin/showargs",
        ".singularity.d/runscript",
    ] {
        assert!(
            listing.iter().any(|p| p == want),
            "{want} missing from {listing:?}"
        );
    }
    assert!(sif_cat(&sif, "etc/os-release").contains("apptainer test busybox"));
    assert_eq!(
        oci_tmp_entries(tmp.path()).len(),
        1,
        "one converted SIF cached"
    );
}

#[test]
fn second_pull_uses_the_cached_sif_and_refuses_to_overwrite_without_force() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let reference = docker_ref("entrypoint:cmd-only");
    apptainer_in(tmp.path(), &["pull", "--no-https", &reference]).assert_success();
    let sif = tmp.path().join("entrypoint_cmd-only.sif");
    let first = std::fs::read(&sif).expect("pulled SIF");

    let again = apptainer_in(tmp.path(), &["pull", "--no-https", &reference]);
    again.assert_failure();
    assert!(again.stderr.contains("already exists"), "{again:?}");
    assert_eq!(
        std::fs::read(&sif).unwrap(),
        first,
        "the existing file was left alone"
    );

    let forced = apptainer_in(tmp.path(), &["pull", "--force", "--no-https", &reference]);
    forced.assert_success();
    assert!(
        forced.stderr.contains("INFO:    Using cached SIF image"),
        "{forced:?}"
    );
    assert!(!forced.stderr.contains("Converting"), "{forced:?}");
    assert_eq!(
        std::fs::read(&sif).unwrap(),
        first,
        "copied from the cache entry"
    );
}

#[test]
fn pull_by_digest_gets_the_same_image_as_the_tag() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let digest = fixture_manifest_digest("busybox", "latest");
    let tmp = user_tempdir();
    let reference = format!("docker://127.0.0.1:5000/test/busybox@{digest}");
    apptainer_in(
        tmp.path(),
        &["pull", "--no-https", "by-digest.sif", &reference],
    )
    .assert_success();
    let listing = sif_listing(&tmp.path().join("by-digest.sif"));
    assert!(listing.iter().any(|p| p == "bin/busybox"), "{listing:?}");
}

#[test]
fn multi_arch_index_resolves_to_the_host_or_the_requested_arch() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    require!(
        std::env::consts::ARCH == "x86_64",
        "an amd64 host (the fixture index has amd64 and arm64)"
    );
    let tmp = user_tempdir();
    let reference = docker_ref("multiarch:latest");
    apptainer_in(tmp.path(), &["pull", "--no-https", "host.sif", &reference]).assert_success();
    apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "--arch",
            "arm64",
            "arm.sif",
            &reference,
        ],
    )
    .assert_success();
    assert_eq!(
        sif_cat(&tmp.path().join("host.sif"), "etc/arch-marker").trim(),
        "amd64"
    );
    assert_eq!(
        sif_cat(&tmp.path().join("arm.sif"), "etc/arch-marker").trim(),
        "arm64"
    );
    apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "--platform",
            "linux/arm64/v8",
            "plat.sif",
            &reference,
        ],
    )
    .assert_success();
    assert_eq!(
        sif_cat(&tmp.path().join("plat.sif"), "etc/arch-marker").trim(),
        "arm64"
    );
    assert_eq!(
        oci_tmp_entries(tmp.path()).len(),
        2,
        "one cache entry per platform"
    );

    let missing = apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "--arch",
            "s390x",
            "s390x.sif",
            &reference,
        ],
    );
    missing.assert_failure();
    assert!(missing.stderr.contains("linux/s390x"), "{missing:?}");
    assert!(!tmp.path().join("s390x.sif").exists());
}

#[test]
fn nohttps_environment_variable_selects_plain_http() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let out = UserCmd::new(&["pull", &docker_ref("busybox:latest")])
        .cwd(tmp.path())
        .env("APPTAINER_CACHEDIR", tmp.path().join("cachedir"))
        .env("APPTAINER_NOHTTPS", "1")
        .run();
    out.assert_success();
    assert!(tmp.path().join("busybox_latest.sif").is_file());
}

#[test]
fn zstd_layers_and_dir_option_work() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let sub = tmp.path().join("out");
    UserCmd::program("mkdir", &[&sub]).run().assert_success();
    let sub_s = sub.to_string_lossy().into_owned();
    apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "--dir",
            &sub_s,
            &docker_ref("zstd:latest"),
        ],
    )
    .assert_success();
    let listing = sif_listing(&sub.join("zstd_latest.sif"));
    assert!(listing.iter().any(|p| p == "bin/busybox"), "{listing:?}");
}

#[test]
fn quiet_pull_prints_nothing() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &["-q", "pull", "--no-https", &docker_ref("busybox:latest")],
    );
    out.assert_success();
    assert_eq!(out.stderr, "", "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
}

#[test]
fn sandbox_pull_makes_a_directory_tree() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "--sandbox",
            &docker_ref("busybox:latest"),
        ],
    )
    .assert_success();
    let root = tmp.path().join("busybox_latest");
    assert!(
        root.join("bin/busybox").is_file(),
        "no bin/busybox in the sandbox"
    );
    assert!(root.join(".singularity.d/runscript").is_file());
}

#[test]
fn disable_cache_leaves_the_cache_untouched() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--disable-cache",
            "--no-https",
            &docker_ref("busybox:latest"),
        ],
    );
    out.assert_success();
    assert!(tmp.path().join("busybox_latest.sif").is_file());
    assert!(
        !tmp.path().join("cachedir/cache/blob").exists(),
        "blob cache was written"
    );
    assert!(oci_tmp_entries(tmp.path()).is_empty());

    let by_env = UserCmd::new(&[
        "pull",
        "--no-https",
        "env.sif",
        &docker_ref("busybox:latest"),
    ])
    .cwd(tmp.path())
    .env("APPTAINER_CACHEDIR", tmp.path().join("cachedir"))
    .env("APPTAINER_DISABLE_CACHE", "true")
    .run();
    by_env.assert_success();
    assert!(tmp.path().join("env.sif").is_file());
    assert!(
        !tmp.path().join("cachedir/cache/blob").exists(),
        "blob cache was written"
    );
}

#[test]
fn cache_directories_are_private_to_the_user() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    use std::os::unix::fs::PermissionsExt;
    let tmp = user_tempdir();
    apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("busybox:latest")],
    )
    .assert_success();
    let cache = tmp.path().join("cachedir/cache");
    for d in [
        cache.clone(),
        cache.join("blob"),
        cache.join("blob/blobs/sha256"),
        cache.join("oci-tmp"),
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", d.display());
    }
}
