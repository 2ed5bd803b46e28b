//! `apptainer cache list` and `apptainer cache clean` on a cache filled by real pulls, as
//! the test user: counts, the verbose table, type filters, the confirmation prompt.

use apptainer_tests::{
    apptainer_in, docker_ref, installed, registry_up, require, test_user_exists, user_tempdir,
    UserCmd,
};
use std::path::Path;

fn ready() -> bool {
    installed() && test_user_exists() && registry_up()
}

/// The FUSE servers' data (`squashfuse` kind) is the test user's, whatever the cache
/// directory: tests that remove every kind, or look at that data, run one at a time.
static PER_USER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn per_user() -> std::sync::MutexGuard<'static, ()> {
    PER_USER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh directory of the test user's with `bb.sif` pulled from the local registry
/// (its cache in `cachedir/`).
fn busybox_sif() -> tempfile::TempDir {
    let tmp = user_tempdir();
    let pull = [
        "pull",
        "--no-https",
        "bb.sif",
        &docker_ref("busybox:latest"),
    ];
    apptainer_in(tmp.path(), &pull).assert_success();
    tmp
}

/// The rows of `cache list -v`'s table: after its header, up to the blank line.
fn table_rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn list_counts_converted_sifs_and_blobs() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let empty = apptainer_in(tmp.path(), &["cache", "list"]);
    empty.assert_success();
    assert!(
        empty.stdout.contains("There are 0 container file(s) using 0.00 KiB and 0 oci blob file(s) using 0.00 KiB of space"),
        "{empty:?}"
    );
    apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("busybox:latest")],
    )
    .assert_success();
    let list = apptainer_in(tmp.path(), &["cache", "list"]);
    list.assert_success();
    assert!(
        list.stdout.contains("There are 1 container file(s)"),
        "{list:?}"
    );
    assert!(list.stdout.contains("and 2 oci blob file(s)"), "{list:?}");
    assert!(list.stdout.contains("Total space used: "), "{list:?}");

    let verbose = apptainer_in(tmp.path(), &["cache", "list", "-v"]);
    verbose.assert_success();
    let lines: Vec<&str> = verbose.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("DATE CREATED")
            && lines[0].ends_with("TYPE"),
        "{verbose:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(" blob")).count(),
        2,
        "{verbose:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(" oci")).count(),
        1,
        "{verbose:?}"
    );

    let only_oci = apptainer_in(tmp.path(), &["cache", "list", "-T", "oci"]);
    assert!(
        only_oci.stdout.contains("There are 1 container file(s)")
            && only_oci.stdout.contains("and 0 oci blob"),
        "{only_oci:?}"
    );
    let bad = apptainer_in(tmp.path(), &["cache", "list", "-T", "bogus"]);
    bad.assert_failure();
    assert!(bad.stderr.contains("invalid cache type"), "{bad:?}");
}

#[test]
fn clean_asks_first_and_removes_by_type() {
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let _guard = per_user();
    let tmp = user_tempdir();
    apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("busybox:latest")],
    )
    .assert_success();
    let blobs = tmp.path().join("cachedir/cache/blob/blobs/sha256");
    let oci_tmp = tmp.path().join("cachedir/cache/oci-tmp");
    let count = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);

    let declined = UserCmd::new(&["cache", "clean"])
        .cwd(tmp.path())
        .env("APPTAINER_CACHEDIR", tmp.path().join("cachedir"))
        .stdin("n\n")
        .run();
    declined.assert_success();
    assert!(
        declined.stdout.contains("Do you want to continue? [y/N]"),
        "{declined:?}"
    );
    assert_eq!(
        (count(&blobs), count(&oci_tmp)),
        (2, 1),
        "nothing removed after 'n'"
    );

    let dry = apptainer_in(tmp.path(), &["cache", "clean", "--dry-run"]);
    dry.assert_success();
    assert_eq!(
        (count(&blobs), count(&oci_tmp)),
        (2, 1),
        "nothing removed by --dry-run"
    );

    let recent = apptainer_in(tmp.path(), &["cache", "clean", "-f", "--days", "1"]);
    recent.assert_success();
    assert_eq!(
        (count(&blobs), count(&oci_tmp)),
        (2, 1),
        "entries newer than a day kept"
    );

    let blobs_only = apptainer_in(tmp.path(), &["cache", "clean", "-f", "-T", "blob"]);
    blobs_only.assert_success();
    assert!(
        blobs_only
            .stderr
            .contains("INFO:    Removing blob cache entry: "),
        "{blobs_only:?}"
    );
    assert_eq!((count(&blobs), count(&oci_tmp)), (0, 1));

    // An entry whose lock a pull holds is kept.
    let entry = std::fs::read_dir(&oci_tmp)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let lock = tmp.path().join(format!(
        "cachedir/cache/.locks/oci-tmp-{}.lock",
        entry.to_string_lossy()
    ));
    let mut holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "600"])
        .spawn()
        .expect("flock");
    // Wait until the holder has the lock (flock -n fails while it is held).
    while std::process::Command::new("flock")
        .arg("-n")
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let busy = apptainer_in(tmp.path(), &["cache", "clean", "-f"]);
    let _ = holder.kill();
    let _ = holder.wait();
    busy.assert_success();
    assert!(
        busy.stderr.contains("is in use by a pull: kept"),
        "{busy:?}"
    );
    assert_eq!(count(&oci_tmp), 1);

    apptainer_in(tmp.path(), &["cache", "clean", "--force"]).assert_success();
    assert_eq!(count(&oci_tmp), 0);
    let locks: Vec<_> = std::fs::read_dir(tmp.path().join("cachedir/cache/.locks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        locks.is_empty(),
        "lock files of removed entries are left: {locks:?}"
    );
    let list = apptainer_in(tmp.path(), &["cache", "list"]);
    assert!(
        list.stdout.contains("There are 0 container file(s)"),
        "{list:?}"
    );
}

#[test]
fn launch_facts_are_listed_apart_and_cleaned_with_the_rest() {
    use apptainer_tests::launch::Mode;
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let mode = Mode::all().into_iter().find(|m| m.available());
    require!(mode.is_some(), "a starter that can launch here");
    let _guard = per_user();
    let tmp = busybox_sif();
    let mut argv = vec!["exec"];
    argv.extend(mode.unwrap().flag());
    argv.extend(["bb.sif", "/bin/busybox", "true"]);
    apptainer_in(tmp.path(), &argv).assert_success();
    let launch = tmp.path().join("cachedir/cache/launch");
    let facts = std::fs::read_dir(&launch).map(|r| r.count()).unwrap_or(0);
    assert_eq!(facts, 1, "the start remembered the image's facts");

    let list = apptainer_in(tmp.path(), &["cache", "list", "-v"]);
    list.assert_success();
    assert_eq!(
        list.stdout
            .lines()
            .filter(|l| l.ends_with(" launch"))
            .count(),
        1,
        "{list:?}"
    );
    assert!(
        list.stdout.contains("There are 1 container file(s)")
            && list.stdout.contains("and 2 oci blob file(s)"),
        "launch facts are not container files: {list:?}"
    );
    let only = apptainer_in(tmp.path(), &["cache", "list", "-v", "-T", "launch"]);
    only.assert_success();
    let rows = table_rows(&only.stdout);
    assert!(rows.len() == 1 && rows[0].ends_with(" launch"), "{only:?}");

    let clean = apptainer_in(tmp.path(), &["cache", "clean", "-f"]);
    clean.assert_success();
    assert!(
        clean
            .stderr
            .contains("INFO:    Removing launch cache entry: "),
        "{clean:?}"
    );
    assert_eq!(
        std::fs::read_dir(&launch).map(|r| r.count()).unwrap_or(0),
        0
    );
}

#[test]
fn the_fuse_servers_data_in_dev_shm_is_listed_apart_and_cleaned() {
    use apptainer_tests::launch::Mode;
    require!(
        ready(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    require!(Mode::Userns.available(), "the user-namespace starter");
    let _guard = per_user();
    let tmp = busybox_sif();
    let run = ["exec", "--userns", "bb.sif", "/bin/busybox", "true"];
    apptainer_in(tmp.path(), &run).assert_success();
    let shm = format!(
        "/dev/shm/apptainer-squashfuse-{}",
        apptainer_tests::test_account().uid
    );
    let images = || {
        std::fs::read_dir(&shm)
            .map(|r| r.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0)
    };
    assert!(images() >= 1, "the FUSE server kept what it decompressed");

    let list = apptainer_in(tmp.path(), &["cache", "list", "-v", "-T", "squashfuse"]);
    list.assert_success();
    let rows = table_rows(&list.stdout);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.ends_with(" squashfuse")),
        "{list:?}"
    );
    assert!(
        list.stdout.contains("There are 0 container file(s)"),
        "the FUSE data holds no images: {list:?}"
    );

    let clean = apptainer_in(tmp.path(), &["cache", "clean", "-f", "-T", "squashfuse"]);
    clean.assert_success();
    assert!(
        clean
            .stderr
            .contains("INFO:    Removing squashfuse cache entry: "),
        "{clean:?}"
    );
    assert_eq!(images(), 0, "{clean:?}");
    // The next start fills it again, and runs as before.
    apptainer_in(tmp.path(), &run).assert_success();
    assert!(images() >= 1);
}
