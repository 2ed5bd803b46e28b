//! What a pull leaves behind when it is interrupted or runs without a cache: Ctrl-C
//! (SIGINT) in the middle of the conversion removes the temporary squashfs, the partial
//! SIF and the packer, and exits 130; `exec --disable-cache docker://...` removes its
//! temporary cache once the container has exited; Ctrl-C while `--unsquash` extracts an
//! image removes the extraction and stops unsquashfs. All as the plain test user.

use apptainer_tests::launch::Mode;
use apptainer_tests::{
    docker_ref, installed, left_in, names_in, registry_up, require, run_as_root, test_user_exists,
    user_tempdir, UserCmd,
};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Writes an OCI layout at `dir/layout` (tag `latest`) of one gzip layer holding 64 MiB of
/// random data: big enough that converting it takes a while even on a fast machine.
fn write_big_layout(dir: &Path) {
    let script = r#"set -eu
d=$1
mkdir -p "$d/root/data" "$d/layout/blobs/sha256"
for i in 1 2 3 4 5 6 7 8; do head -c 8M /dev/urandom > "$d/root/data/f$i"; done
tar -C "$d/root" -cf "$d/layer.tar" .
diff=$(sha256sum < "$d/layer.tar" | cut -c1-64)
gzip -1 -c "$d/layer.tar" > "$d/layer.tgz"
lay=$(sha256sum < "$d/layer.tgz" | cut -c1-64); lsz=$(stat -c %s "$d/layer.tgz")
mv "$d/layer.tgz" "$d/layout/blobs/sha256/$lay"
arch=$(dpkg --print-architecture)
printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$diff" > "$d/config.json"
cfg=$(sha256sum < "$d/config.json" | cut -c1-64); csz=$(stat -c %s "$d/config.json")
mv "$d/config.json" "$d/layout/blobs/sha256/$cfg"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$csz" "$lay" "$lsz" > "$d/manifest.json"
man=$(sha256sum < "$d/manifest.json" | cut -c1-64); msz=$(stat -c %s "$d/manifest.json")
mv "$d/manifest.json" "$d/layout/blobs/sha256/$man"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$man" "$msz" > "$d/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$d/layout/oci-layout"
rm -rf "$d/root" "$d/layer.tar"
chmod -R a+rX "$d"
"#;
    run_as_root("sh", &["-c", script, "sh", dir.to_str().unwrap()]).assert_success();
}

/// Processes whose command line mentions `needle` (a helper such as tar2sqfs left running).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// Sends SIGINT to `child` (apptainer as the test user) once `started` holds, then checks
/// it exited 130 as a shell reports an interrupt; returns its stderr.
fn interrupt_when(mut child: Child, what: &str, started: impl Fn() -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !started() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("apptainer finished before it could be interrupted: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Our own child, not reaped yet: the pid cannot have been reused.
    run_as_root("kill", &["-INT", &child.id().to_string()]).assert_success();
    let output = child.wait_with_output().expect("wait for apptainer");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    stderr
}

#[test]
fn sigint_during_conversion_leaves_no_temp_file_partial_sif_or_packer() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user (scripts/test-setup.sh)"
    );
    let image = tempfile::tempdir_in("/var/tmp").unwrap();
    write_big_layout(image.path());
    let work = user_tempdir();
    let (tmp, out, cachedir) = (
        work.path().join("tmp"),
        work.path().join("out"),
        work.path().join("cachedir"),
    );
    UserCmd::program("mkdir", &[tmp.to_str().unwrap(), out.to_str().unwrap()])
        .run()
        .assert_success();
    let layout = format!("oci:{}:latest", image.path().join("layout").display());
    let child = UserCmd::new(&["pull", "big.sif", &layout])
        .env("HOME", work.path())
        .env("APPTAINER_CACHEDIR", &cachedir)
        .env("APPTAINER_TMPDIR", &tmp)
        .cwd(&out)
        .spawn();
    // The temporary squashfs appears when the conversion starts: interrupt then.
    let stderr = interrupt_when(child, "the conversion started", || {
        names_in(&tmp).iter().any(|n| n.starts_with("squashfs-"))
    });

    assert_eq!(names_in(&tmp), Vec::<String>::new(), "temp dir: {stderr}");
    assert_eq!(names_in(&out), Vec::<String>::new(), "output dir: {stderr}");
    let cache = cachedir.join("cache");
    assert_eq!(
        names_in(&cache.join("oci-tmp")),
        Vec::<String>::new(),
        "no SIF, partial or complete, in the cache"
    );
    let blobs = names_in(&cache.join("blob/blobs/sha256"));
    assert!(blobs.iter().all(|n| n.len() == 64), "{blobs:?}");
    assert_eq!(
        processes_mentioning(tmp.to_str().unwrap()),
        Vec::<String>::new(),
        "a helper outlived the interrupted pull"
    );

    // The next pull works from what was left.
    UserCmd::new(&["pull", "big.sif", &layout])
        .cwd(&out)
        .env("APPTAINER_CACHEDIR", &cachedir)
        .env("APPTAINER_TMPDIR", &tmp)
        .run()
        .assert_success();
    assert_eq!(names_in(&out), ["big.sif"]);
    assert_eq!(names_in(&tmp), Vec::<String>::new());
}

#[test]
fn exec_with_disable_cache_removes_its_temporary_cache_after_the_container() {
    require!(
        installed() && test_user_exists() && registry_up(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let mode = Mode::all().into_iter().find(|m| m.available());
    require!(mode.is_some(), "a starter that can launch here");
    let work = user_tempdir();
    let tmp = work.path().join("tmp");
    UserCmd::program("mkdir", &[tmp.to_str().unwrap()])
        .run()
        .assert_success();
    let reference = docker_ref("busybox:latest");
    let mut argv = vec!["exec"];
    argv.extend(mode.unwrap().flag());
    argv.extend(["--disable-cache", &reference, "/bin/busybox", "echo", "ran"]);
    let out = UserCmd::new(&argv)
        .env("APPTAINER_NOHTTPS", "1")
        .env("APPTAINER_TMPDIR", &tmp)
        .env("APPTAINER_CACHEDIR", work.path().join("cachedir"))
        .run();
    out.assert_success();
    assert_eq!(out.stdout.trim(), "ran", "{out:?}");
    // The removal happens once the container has exited, in a watcher process.
    assert_eq!(left_in(&tmp), Vec::<String>::new(), "{out:?}");
    assert!(
        !work.path().join("cachedir/cache/oci-tmp").exists(),
        "--disable-cache wrote to the user's cache"
    );
}

#[test]
fn sigint_during_an_extraction_leaves_nothing_and_stops_unsquashfs() {
    require!(
        installed() && test_user_exists(),
        "installed apptainer and test user (scripts/test-setup.sh)"
    );
    let work = user_tempdir();
    let (tmp, data, image) = (
        work.path().join("tmp"),
        work.path().join("data"),
        work.path().join("big.sqfs"),
    );
    // 128 MiB of random data, stored uncompressed: an extraction long enough to interrupt.
    let make = format!(
        "mkdir {t} {d} && head -c 134217728 /dev/urandom > {d}/blob && \
         mksquashfs {d} {i} -noI -noD -noF -noX -quiet -no-progress",
        t = tmp.display(),
        d = data.display(),
        i = image.display()
    );
    UserCmd::program("sh", &["-c", &make])
        .run()
        .assert_success();
    let child = UserCmd::new(&["exec", "--unsquash", image.to_str().unwrap(), "/bin/true"])
        .env("HOME", work.path())
        .env("APPTAINER_TMPDIR", &tmp)
        .cwd(work.path())
        .spawn();
    // The extraction's directory appears when unsquashfs starts: interrupt then.
    let stderr = interrupt_when(child, "the extraction started", || {
        names_in(&tmp).iter().any(|n| n.starts_with("rootfs-"))
    });
    assert_eq!(names_in(&tmp), Vec::<String>::new(), "{stderr}");
    assert_eq!(
        processes_mentioning(tmp.to_str().unwrap()),
        Vec::<String>::new(),
        "unsquashfs outlived the interrupted start"
    );
}
