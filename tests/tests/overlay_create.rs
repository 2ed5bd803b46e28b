//! `apptainer overlay create` as the plain test user: a new ext3 image with `/upper` and
//! `/work` owned by the caller (by root with `--fakeroot`), `--create-dir`, `--sparse`, an
//! overlay partition appended to a SIF (and refused a second time), and bad targets refused
//! with one line and nothing written. The images are inspected with e2fsprogs' `debugfs`.

use apptainer_tests::launch::pull_fixture_into;
use apptainer_tests::{
    account, fixtures_built, installed, require, run_as_root, tempdir_for, test_user_exists,
    user_namespaces_available, Out, TempDir, UserCmd, TEST_USER,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn ready() -> bool {
    installed() && test_user_exists() && Path::new("/usr/sbin/debugfs").exists()
}

fn create(args: &[&str]) -> Out {
    let mut argv = vec!["overlay", "create"];
    argv.extend_from_slice(args);
    UserCmd::new(&argv).run()
}

/// `debugfs -R "ls -l DIR" IMAGE` as (name, uid, gid) triples.
fn ls(image: &Path, dir: &str) -> Vec<(String, u32, u32)> {
    let out = run_as_root(
        "/usr/sbin/debugfs",
        &["-R", &format!("ls -l {dir}"), image.to_str().unwrap()],
    );
    out.assert_success();
    out.stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // inode, mode, (links), uid, gid, size, date, time, name
            if f.len() < 9 {
                return None;
            }
            Some((f[8].to_string(), f[3].parse().ok()?, f[4].parse().ok()?))
        })
        .collect()
}

fn owner(entries: &[(String, u32, u32)], name: &str) -> Option<(u32, u32)> {
    entries
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, u, g)| (*u, *g))
}

fn entries_of(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_image_has_upper_and_work_owned_by_the_caller() {
    require!(ready(), "installed apptainer, test user and debugfs");
    let dir = tempdir_for(TEST_USER);
    let img = dir.path().join("overlay.img");
    create(&["--create-dir", "/data/sub", img.to_str().unwrap()]).assert_success();
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    let acct = account(TEST_USER).unwrap();
    let root = ls(&img, "/");
    assert_eq!(
        owner(&root, "upper"),
        Some((acct.uid, acct.gid)),
        "{root:?}"
    );
    assert_eq!(owner(&root, "work"), Some((acct.uid, acct.gid)), "{root:?}");
    let data = ls(&img, "/upper/data");
    assert_eq!(owner(&data, "sub"), Some((acct.uid, acct.gid)), "{data:?}");
    // Only the image: no temporary file left next to it.
    assert_eq!(entries_of(&dir), ["overlay.img"]);
}

#[test]
fn size_and_sparse_decide_the_allocation() {
    require!(ready(), "installed apptainer, test user and debugfs");
    let dir = tempdir_for(TEST_USER);
    let full = dir.path().join("full.img");
    let sparse = dir.path().join("sparse.img");
    create(&["--size", "80", full.to_str().unwrap()]).assert_success();
    create(&["-S", "-s", "80", sparse.to_str().unwrap()]).assert_success();
    let (f, s) = (
        std::fs::metadata(&full).unwrap(),
        std::fs::metadata(&sparse).unwrap(),
    );
    assert_eq!(f.len(), 80 << 20);
    assert_eq!(s.len(), 80 << 20);
    assert!(
        f.blocks() * 512 >= 80 << 20,
        "full image allocated {}",
        f.blocks()
    );
    assert!(
        s.blocks() * 512 < 40 << 20,
        "sparse image allocated {}",
        s.blocks()
    );
}

#[test]
fn fakeroot_makes_the_layout_root_owned() {
    require!(
        ready() && user_namespaces_available(),
        "installed apptainer, test user, debugfs and user namespaces"
    );
    let dir = tempdir_for(TEST_USER);
    let img = dir.path().join("fr.img");
    create(&["--fakeroot", img.to_str().unwrap()]).assert_success();
    let root = ls(&img, "/");
    assert_eq!(owner(&root, "upper"), Some((0, 0)), "{root:?}");
    assert_eq!(owner(&root, "work"), Some((0, 0)), "{root:?}");
}

fn pulled_sif(dir: &TempDir) -> PathBuf {
    pull_fixture_into(
        TEST_USER,
        dir.path(),
        "busybox",
        "latest",
        "busybox.sif",
        &[],
    )
}

#[test]
fn a_sif_gets_one_overlay_partition() {
    require!(
        ready() && fixtures_built(),
        "installed apptainer, test user, debugfs and fixtures"
    );
    let dir = tempdir_for(TEST_USER);
    let sif = pulled_sif(&dir);
    let before = std::fs::metadata(&sif).unwrap().len();
    // A SIF the caller cannot write is refused before anything is made.
    let chmod = |mode: &str| {
        UserCmd::program("chmod", &[mode, sif.to_str().unwrap()])
            .run()
            .assert_success();
    };
    chmod("0444");
    let ro = create(&[sif.to_str().unwrap()]);
    ro.assert_failure();
    assert_eq!(ro.stderr.lines().count(), 1, "{ro:?}");
    assert!(ro.stderr.contains("cannot write to SIF image"), "{ro:?}");
    assert_eq!(std::fs::metadata(&sif).unwrap().len(), before);
    chmod("0644");
    create(&[sif.to_str().unwrap()]).assert_success();
    let list = UserCmd::new(&["sif", "list", sif.to_str().unwrap()]).run();
    list.assert_success();
    let overlays: Vec<&str> = list
        .stdout
        .lines()
        .filter(|l| l.contains("FS (Ext3/Overlay/"))
        .collect();
    assert_eq!(overlays.len(), 1, "{list:?}");
    let after = std::fs::metadata(&sif).unwrap().len();
    assert!(after >= before + (64 << 20), "{before} -> {after}");
    // The image still runs.
    UserCmd::new(&["exec", sif.to_str().unwrap(), "/bin/true"])
        .run()
        .assert_success();
    // A second writable overlay is refused and the SIF is left as it was.
    let again = create(&[sif.to_str().unwrap()]);
    again.assert_failure();
    assert_eq!(again.stderr.lines().count(), 1, "{again:?}");
    assert!(
        again
            .stderr
            .contains("a writable overlay partition already exists"),
        "{again:?}"
    );
    assert_eq!(std::fs::metadata(&sif).unwrap().len(), after);
    assert_eq!(entries_of(&dir), ["busybox.sif", "cache"]);
}

#[test]
fn bad_targets_and_sizes_are_one_line_each_and_write_nothing() {
    require!(ready(), "installed apptainer, test user and debugfs");
    let dir = tempdir_for(TEST_USER);
    let text = dir.path().join("notes.txt");
    UserCmd::program(
        "/bin/sh",
        &["-c", &format!("echo hello > {}", text.display())],
    )
    .run()
    .assert_success();
    let img = dir.path().join("o.img");
    create(&[img.to_str().unwrap()]).assert_success();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--size", "32", "small.img"],
            "image size must be equal or greater than 64 MiB",
        ),
        (&["notes.txt"], "is not a SIF image"),
        (&["o.img"], "EXT3 overlay image"),
        (
            &["--create-dir", "../escape", "x.img"],
            "outside of the overlay layout",
        ),
    ];
    for (args, why) in cases {
        let full: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "small.img" | "notes.txt" | "o.img" | "x.img" => {
                    dir.path().join(a).to_string_lossy().into_owned()
                }
                _ => a.to_string(),
            })
            .collect();
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = create(&refs);
        out.assert_failure();
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("FATAL:   "), "{args:?}: {out:?}");
        assert!(out.stderr.contains(why), "{args:?}: {out:?}");
    }
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "hello\n");
    assert_eq!(entries_of(&dir), ["notes.txt", "o.img"]);
}
