//! Checks that scripts/test-setup.sh prepared what the other end-to-end tests rely on: the
//! two test users and their subordinate ids, a usable /dev/fuse, the local registry serving
//! every fixture reference byte-identical to its OCI layout, and the fixture files.

use std::os::unix::fs::MetadataExt;

use apptainer_tests::{
    account, fixture_docker_archive, fixture_layout, fixture_oci_archive, fixtures, fixtures_built,
    is_root, registry_up, require, run_as_root, run_as_user, user_tempdir, REGISTRY, TEST_USER,
    TEST_USER2,
};

const ACCEPT: &str = "Accept: application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json";

/// (name, tag, flag) for every reference test-setup.sh pushed.
fn refs() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(fixtures().join("refs.txt")).expect("fixtures/refs.txt");
    text.lines()
        .map(|l| {
            let mut f = l.split(' ');
            let mut next = || f.next().unwrap_or("").to_string();
            (next(), next(), next())
        })
        .collect()
}

fn subid_line(file: &str, user: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .map(str::to_string)
}

#[test]
fn test_users_exist_with_subids_only_for_the_first() {
    require!(
        account(TEST_USER).is_some(),
        "test users (scripts/test-setup.sh)"
    );
    let second = account(TEST_USER2).expect("second test user");
    assert_ne!(account(TEST_USER).unwrap().uid, second.uid);
    for file in ["/etc/subuid", "/etc/subgid"] {
        let line = subid_line(file, TEST_USER).unwrap_or_else(|| panic!("{TEST_USER} in {file}"));
        let count: u64 = line.rsplit(':').next().unwrap().parse().expect("count");
        assert!(count >= 65536, "{file}: {line}");
        assert_eq!(subid_line(file, TEST_USER2), None, "{file}");
    }
}

#[test]
fn dev_fuse_is_usable_by_everyone() {
    require!(
        account(TEST_USER).is_some(),
        "test users (scripts/test-setup.sh)"
    );
    let meta = std::fs::metadata("/dev/fuse").expect("/dev/fuse exists");
    assert_eq!(meta.mode() & 0o666, 0o666);
}

#[test]
fn user_tempdir_is_private_to_the_test_user() {
    require!(is_root(), "tests run as root");
    require!(
        account(TEST_USER).is_some(),
        "test users (scripts/test-setup.sh)"
    );
    let dir = user_tempdir();
    let path = dir.path().to_str().unwrap().to_string();
    let own = run_as_user("touch", &[&format!("{path}/mine")]);
    assert!(own.success(), "{own:?}");
    let other = apptainer_tests::UserCmd::program("ls", &[&path])
        .user(TEST_USER2)
        .run();
    assert!(
        !other.success(),
        "{TEST_USER2} could list {path}: {other:?}"
    );
}

#[test]
fn registry_serves_every_fixture_as_built() {
    require!(
        registry_up(),
        "local registry on 127.0.0.1:5000 (scripts/test-setup.sh)"
    );
    require!(fixtures_built(), "fixture images (scripts/test-setup.sh)");
    for (name, tag, _) in refs() {
        let url = format!("http://{REGISTRY}/v2/test/{name}/manifests/{tag}");
        let remote = run_as_root("curl", &["-fsS", "-H", ACCEPT, &url]);
        assert!(remote.success(), "{name}:{tag}: {remote:?}");
        let layout = fixture_layout(&name);
        let local = run_as_root(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &format!("oci:{}:{tag}", layout.display()),
            ],
        );
        assert!(local.success(), "{name}:{tag}: {local:?}");
        assert_eq!(
            remote.stdout, local.stdout,
            "{name}:{tag} differs from its layout"
        );
    }
}

#[test]
fn fixture_archives_and_listings_are_readable_by_the_test_user() {
    require!(is_root(), "tests run as root");
    require!(fixtures_built(), "fixture images (scripts/test-setup.sh)");
    for (name, tag, flag) in refs() {
        let mut files = vec![fixture_oci_archive(&name, &tag)];
        if flag != "zstd" {
            files.push(fixture_docker_archive(&name, &tag));
        }
        for f in files {
            let out = run_as_user("head", &["-c", "1", f.to_str().unwrap()]);
            assert!(out.success(), "{}: {out:?}", f.display());
        }
    }
    let listing = std::fs::read_to_string(fixtures().join("expected/multilayer_latest.list"))
        .expect("multilayer listing");
    // The whiteouts and the opaque marker took effect in umoci's independent unpack.
    assert!(listing.contains(" data/opaque/new1\n"), "{listing}");
    assert!(!listing.contains("data/opaque/old1"), "{listing}");
    assert!(!listing.contains("data/delete-me.txt"), "{listing}");
    assert!(!listing.contains(".wh."), "{listing}");
}
