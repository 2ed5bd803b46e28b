//! `build` between local image forms, as the test user: a pulled SIF unpacked to a sandbox,
//! the sandbox packed back into a SIF with the same tree, and refusals that leave nothing.

use apptainer_tests::{
    apptainer_in, docker_ref, installed, registry_up, require, squashfs_listing, test_user_exists,
    user_tempdir,
};
use std::path::Path;

fn sif_listing(sif: &Path) -> Vec<String> {
    let mut f = std::fs::File::open(sif).unwrap_or_else(|e| panic!("open {}: {e}", sif.display()));
    let offset = sif::primary_partition(&mut f)
        .expect("a SIF with a primary partition")
        .offset;
    let mut v = squashfs_listing(sif, offset);
    v.sort();
    v
}

#[test]
fn sif_to_sandbox_and_back_keeps_the_tree() {
    require!(
        installed() && test_user_exists() && registry_up(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let dir = tmp.path();
    apptainer_in(
        dir,
        &[
            "pull",
            "--no-https",
            "orig.sif",
            &docker_ref("multilayer:latest"),
        ],
    )
    .assert_success();
    let out = apptainer_in(dir, &["build", "--sandbox", "sb", "orig.sif"]);
    out.assert_success();
    assert!(
        out.stderr.contains("INFO:    Build complete: sb"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sb/data/keep.txt"))
            .unwrap()
            .trim(),
        "keep v2"
    );

    apptainer_in(dir, &["build", "back.sif", "sb"]).assert_success();
    assert_eq!(
        sif_listing(&dir.join("orig.sif")),
        sif_listing(&dir.join("back.sif"))
    );

    apptainer_in(dir, &["build", "copy.sif", "orig.sif"]).assert_success();
    assert_eq!(
        std::fs::read(dir.join("copy.sif")).unwrap(),
        std::fs::read(dir.join("orig.sif")).unwrap()
    );

    let again = apptainer_in(dir, &["build", "-s", "sb", "orig.sif"]);
    again.assert_failure();
    assert!(again.stderr.contains("already exists"), "{again:?}");
    apptainer_in(dir, &["build", "--force", "--sandbox", "sb", "orig.sif"]).assert_success();

    let same = apptainer_in(dir, &["build", "--sandbox", "sb2", "sb"]);
    same.assert_failure();
    assert!(same.stderr.contains("already a sandbox"), "{same:?}");
    assert!(!dir.join("sb2").exists());
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
