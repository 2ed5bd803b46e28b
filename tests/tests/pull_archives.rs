//! `pull` and `build` from docker-archive (plain and gzip), oci (layout dir + tag) and
//! oci-archive sources, as the test user through the installed binary, with contents
//! checked by listing the SIF's squashfs partition independently.

use apptainer_tests::{
    apptainer_in, fixture_docker_archive, fixture_layout, fixture_oci_archive, fixtures,
    fixtures_built, installed, require, squashfs_listing, test_user_exists, user_tempdir,
};
use std::path::Path;

const NEEDS: &str = "installed apptainer, test user and fixtures (scripts/test-setup.sh)";

fn ready() -> bool {
    installed() && test_user_exists() && fixtures_built()
}

fn sif_listing(sif: &Path) -> Vec<String> {
    let mut f = std::fs::File::open(sif).unwrap_or_else(|e| panic!("open {}: {e}", sif.display()));
    let offset = sif::primary_partition(&mut f)
        .expect("a SIF with a primary partition")
        .offset;
    squashfs_listing(sif, offset)
}

#[track_caller]
fn assert_has(listing: &[String], paths: &[&str]) {
    for p in paths {
        assert!(
            listing.iter().any(|l| l == p),
            "{p} missing from {listing:?}"
        );
    }
}

#[test]
fn docker_archive_plain_and_gzip_convert() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let plain = format!(
        "docker-archive:{}",
        fixture_docker_archive("busybox", "latest").display()
    );
    let gz = format!(
        "docker-archive:{}",
        fixtures()
            .join("archives/busybox_latest.docker.tar.gz")
            .display()
    );
    for (sif, src) in [("plain.sif", &plain), ("gz.sif", &gz)] {
        apptainer_in(tmp.path(), &["pull", sif, src]).assert_success();
    }
    for sif in ["plain.sif", "gz.sif"] {
        assert_has(
            &sif_listing(&tmp.path().join(sif)),
            &["bin/busybox", ".singularity.d/runscript"],
        );
    }
}

#[test]
fn multilayer_docker_archive_applies_whiteouts() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let src = format!(
        "docker-archive:{}",
        fixture_docker_archive("multilayer", "latest").display()
    );
    apptainer_in(tmp.path(), &["build", "ml.sif", &src]).assert_success();
    let listing = sif_listing(&tmp.path().join("ml.sif"));
    assert_has(
        &listing,
        &[
            "data/keep.txt",
            "data/opaque/new1",
            "data/dir-to-delete/revived.txt",
        ],
    );
    for gone in [
        "data/delete-me.txt",
        "data/opaque/old1",
        "data/link-dangling",
    ] {
        assert!(
            !listing.iter().any(|l| l == gone),
            "{gone} should be whited out"
        );
    }
}

#[test]
fn oci_layout_selects_the_tag() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let src = format!(
        "oci:{}:entrypoint-only",
        fixture_layout("entrypoint").display()
    );
    let out = apptainer_in(tmp.path(), &["pull", &src]);
    out.assert_success();
    let sif = tmp.path().join("entrypoint_entrypoint-only.sif");
    assert_has(&sif_listing(&sif), &["usr/bin/showargs"]);

    let layout = fixture_layout("entrypoint");
    for (dest, src, expect) in [
        (
            "x.sif",
            format!("oci:{}", layout.display()),
            "choose one with :<tag>",
        ),
        (
            "y.sif",
            format!("oci:{}:nope", layout.display()),
            "no image tagged \"nope\"",
        ),
    ] {
        let out = apptainer_in(tmp.path(), &["pull", dest, &src]);
        out.assert_failure();
        assert!(out.stderr.contains(expect), "{out:?}");
    }
}

#[test]
fn oci_archive_converts_and_build_reports_completion() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let src = format!(
        "oci-archive:{}",
        fixture_oci_archive("zstd", "latest").display()
    );
    let out = apptainer_in(tmp.path(), &["build", "z.sif", &src]);
    out.assert_success();
    assert!(
        out.stderr.contains("INFO:    Build complete: z.sif"),
        "{out:?}"
    );
    assert_has(&sif_listing(&tmp.path().join("z.sif")), &["bin/busybox"]);
}

#[test]
fn build_sandbox_from_an_archive_and_refuse_overwrite_without_force() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let src = format!(
        "oci-archive:{}",
        fixture_oci_archive("busybox", "latest").display()
    );
    apptainer_in(tmp.path(), &["build", "--sandbox", "sb", &src]).assert_success();
    assert!(tmp.path().join("sb/bin/busybox").is_file());
    let again = apptainer_in(tmp.path(), &["build", "--sandbox", "sb", &src]);
    again.assert_failure();
    assert!(again.stderr.contains("already exists"), "{again:?}");
    apptainer_in(tmp.path(), &["build", "--force", "-s", "sb", &src]).assert_success();
    assert!(tmp.path().join("sb/bin/busybox").is_file());
}

#[test]
fn the_same_archive_twice_reuses_the_cached_sif() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let src = format!(
        "docker-archive:{}",
        fixture_docker_archive("entrypoint", "both").display()
    );
    apptainer_in(tmp.path(), &["pull", "a.sif", &src]).assert_success();
    let second = apptainer_in(tmp.path(), &["pull", "b.sif", &src]);
    second.assert_success();
    assert!(
        second.stderr.contains("INFO:    Using cached SIF image"),
        "{second:?}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("a.sif")).unwrap(),
        std::fs::read(tmp.path().join("b.sif")).unwrap()
    );
}

/// `docker save busybox multilayer`: one archive holding both fixture images, written
/// with Python's tarfile (members shared by the two archives are stored once).
fn write_two_image_archive(dest: &Path) {
    let script = r#"
import io, json, sys, tarfile
out, srcs = sys.argv[1], sys.argv[2:]
manifests, seen = [], set()
with tarfile.open(out, "w") as w:
    for src in srcs:
        with tarfile.open(src) as r:
            for m in r.getmembers():
                if m.name == "manifest.json":
                    manifests += json.load(r.extractfile(m))
                elif m.name not in seen:
                    seen.add(m.name)
                    w.addfile(m, r.extractfile(m) if m.isfile() else None)
    data = json.dumps(manifests).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(data)
    w.addfile(info, io.BytesIO(data))
"#;
    let busybox = fixture_docker_archive("busybox", "latest");
    let multilayer = fixture_docker_archive("multilayer", "latest");
    let out = apptainer_tests::UserCmd::program(
        "python3",
        &[
            "-c",
            script,
            dest.to_str().unwrap(),
            busybox.to_str().unwrap(),
            multilayer.to_str().unwrap(),
        ],
    )
    .run();
    out.assert_success();
}

#[test]
fn an_archive_of_several_images_needs_one_named_by_tag_or_index() {
    require!(ready(), NEEDS);
    let tmp = user_tempdir();
    let archive = tmp.path().join("two.tar");
    write_two_image_archive(&archive);
    let src = format!("docker-archive:{}", archive.display());

    let out = apptainer_in(tmp.path(), &["pull", "none.sif", &src]);
    out.assert_one_error(
        "it holds 2 images: name one (choices: @0 docker.io/test/busybox:latest, \
         @1 docker.io/test/multilayer:latest)",
    );
    assert!(!tmp.path().join("none.sif").exists());
    let out = apptainer_in(
        tmp.path(),
        &["pull", "bad.sif", &format!("{src}:test/other")],
    );
    out.assert_one_error("no image \"test/other\" in it (choices: @0");
    assert!(!tmp.path().join("bad.sif").exists());

    apptainer_in(
        tmp.path(),
        &["pull", "ml.sif", &format!("{src}:test/multilayer")],
    )
    .assert_success();
    assert_has(&sif_listing(&tmp.path().join("ml.sif")), &["data/keep.txt"]);
    apptainer_in(tmp.path(), &["pull", "bb.sif", &format!("{src}:@0")]).assert_success();
    let busybox = sif_listing(&tmp.path().join("bb.sif"));
    assert_has(&busybox, &["bin/busybox"]);
    assert!(!busybox.iter().any(|l| l == "data/keep.txt"), "{busybox:?}");
}
