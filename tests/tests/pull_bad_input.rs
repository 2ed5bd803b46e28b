//! Bad input to `pull`/`build`: each case exits non-zero with one `FATAL:`/`ERROR:` line and
//! leaves no output file and no cache entry. Digest mismatches are served by a hostile
//! registry run inside the test (real HTTP on 127.0.0.1, wrong bytes for a layer).

use apptainer_tests::{
    apptainer_in, docker_ref, fixture_layout, fixtures_built, installed, registry_up, require,
    test_user_exists, user_tempdir, UserCmd,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn ready() -> bool {
    installed() && test_user_exists()
}

/// The command failed with exactly one error line, and `dir` holds nothing but the cache
/// (which holds no converted SIF).
#[track_caller]
fn assert_clean_failure(out: &apptainer_tests::Out, dir: &Path, expect: &str) {
    out.assert_one_error(expect);
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cachedir" && n != "input")
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let oci_tmp = dir.join("cachedir/cache/oci-tmp");
    if let Ok(entries) = std::fs::read_dir(&oci_tmp) {
        let entries: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        assert!(entries.is_empty(), "cache entries left: {entries:?}");
    }
}

#[test]
fn unknown_transport_is_refused() {
    require!(
        ready(),
        "installed apptainer and test user (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(tmp.path(), &["pull", "foo://bar/baz"]);
    assert_clean_failure(&out, tmp.path(), "unsupported transport type: foo");
}

#[test]
fn malformed_reference_is_refused() {
    require!(
        ready(),
        "installed apptainer and test user (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    for bad in [
        "docker://Upper/Case",
        "docker://alpine:",
        "docker://alpine@sha256:1234",
        "docker://",
    ] {
        let out = apptainer_in(tmp.path(), &["pull", "x.sif", bad]);
        assert_clean_failure(&out, tmp.path(), "invalid image reference");
    }
}

#[test]
fn unknown_tag_and_unknown_repository_are_reported() {
    require!(
        ready() && registry_up(),
        "installed apptainer, test user and local registry"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("busybox:no-such-tag")],
    );
    assert_clean_failure(&out, tmp.path(), "manifest unknown");
    let out = apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("no-such-repo:latest")],
    );
    assert_clean_failure(&out, tmp.path(), "no-such-repo");
}

#[test]
fn missing_and_non_tar_archives_are_reported() {
    require!(
        ready(),
        "installed apptainer and test user (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &["pull", "x.sif", "docker-archive:/nonexistent/img.tar"],
    );
    assert_clean_failure(&out, tmp.path(), "no such file");
    let out = apptainer_in(tmp.path(), &["pull", "x.sif", "oci:/nonexistent/layout"]);
    assert_clean_failure(&out, tmp.path(), "no such directory");

    let input = tmp.path().join("input");
    UserCmd::program("mkdir", &[&input]).run().assert_success();
    let junk = input.join("junk.tar");
    UserCmd::program(
        "sh",
        &[
            "-c",
            &format!("echo 'not a tar at all' > {}", junk.display()),
        ],
    )
    .run()
    .assert_success();
    for transport in ["docker-archive", "oci-archive"] {
        let out = apptainer_in(
            tmp.path(),
            &["pull", "x.sif", &format!("{transport}:{}", junk.display())],
        );
        assert_clean_failure(&out, tmp.path(), "not a tar archive");
    }
}

#[test]
fn corrupt_layer_in_an_oci_layout_is_a_digest_mismatch() {
    require!(
        ready() && fixtures_built(),
        "installed apptainer, test user and fixtures"
    );
    let tmp = user_tempdir();
    let layout = tmp.path().join("input");
    let src = fixture_layout("busybox");
    UserCmd::program("cp", &[Path::new("-r"), &src, &layout])
        .run()
        .assert_success();
    // Flip bytes in the middle of the largest blob (the layer), keeping its size.
    let largest = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let len = std::fs::metadata(&largest).unwrap().len();
    let script = format!(
        "printf 'XXXXXXXX' | dd of={} bs=1 seek={} conv=notrunc status=none",
        largest.display(),
        len / 2
    );
    UserCmd::program("sh", &["-c", &script])
        .run()
        .assert_success();
    let out = apptainer_in(
        tmp.path(),
        &["pull", "x.sif", &format!("oci:{}:latest", layout.display())],
    );
    assert_clean_failure(&out, tmp.path(), "digest mismatch");
    let hex = largest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !tmp.path()
            .join("cachedir/cache/blob/blobs/sha256")
            .join(&hex)
            .exists(),
        "the corrupt blob was cached"
    );
}

#[test]
fn unwritable_output_directory_and_existing_output_are_refused() {
    require!(
        ready() && registry_up(),
        "installed apptainer, test user and local registry"
    );
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "/proc/x.sif",
            &docker_ref("busybox:latest"),
        ],
    );
    assert_clean_failure(&out, tmp.path(), "/proc");
    let out = apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "/nonexistent-dir/x.sif",
            &docker_ref("busybox:latest"),
        ],
    );
    assert_clean_failure(&out, tmp.path(), "/nonexistent-dir");
    UserCmd::program("touch", &[tmp.path().join("busybox_latest.sif")])
        .run()
        .assert_success();
    let out = apptainer_in(
        tmp.path(),
        &["pull", "--no-https", &docker_ref("busybox:latest")],
    );
    out.assert_failure();
    assert!(out.stderr.contains("already exists"), "{out:?}");
    assert_eq!(
        std::fs::metadata(tmp.path().join("busybox_latest.sif"))
            .unwrap()
            .len(),
        0
    );
}

// ---- a hostile registry -------------------------------------------------------------

/// What the hostile registry serves, by URL path.
struct Served {
    routes: HashMap<String, (String, Vec<u8>)>,
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Serves an image whose layer bytes do not match the manifest's digest. Returns the
/// registry address and the layer's (claimed) digest hex.
fn start_hostile_registry() -> (String, String) {
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut corrupt = layer.clone();
    corrupt[100_000] ^= 0xff;
    let config_hex = sha256_hex(&config);
    let layer_hex = sha256_hex(&layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{layer_hex}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let mut routes = HashMap::new();
    routes.insert(
        "/v2/".to_string(),
        ("application/json".to_string(), b"{}".to_vec()),
    );
    routes.insert(
        "/v2/evil/img/manifests/1".to_string(),
        (
            "application/vnd.oci.image.manifest.v1+json".to_string(),
            manifest.into_bytes(),
        ),
    );
    routes.insert(
        format!("/v2/evil/img/blobs/sha256:{config_hex}"),
        ("application/octet-stream".to_string(), config),
    );
    routes.insert(
        format!("/v2/evil/img/blobs/sha256:{layer_hex}"),
        ("application/octet-stream".to_string(), corrupt),
    );
    let served = Arc::new(Served { routes });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let served = served.clone();
            std::thread::spawn(move || serve(stream, &served));
        }
    });
    (addr, layer_hex)
}

fn serve(stream: TcpStream, served: &Served) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        let _ = reader.read_exact(&mut body);
        let response = match served.routes.get(&path) {
            Some((ct, data)) => {
                let mut head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                )
                .into_bytes();
                if method != "HEAD" {
                    head.extend_from_slice(data);
                }
                head
            }
            None => b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        };
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

#[test]
fn a_registry_serving_wrong_layer_bytes_is_refused_and_nothing_is_cached() {
    require!(
        ready(),
        "installed apptainer and test user (scripts/test-setup.sh)"
    );
    let (addr, layer_hex) = start_hostile_registry();
    let tmp = user_tempdir();
    let out = apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            "x.sif",
            &format!("docker://{addr}/evil/img:1"),
        ],
    );
    assert_clean_failure(&out, tmp.path(), "digest mismatch");
    let blobs = tmp.path().join("cachedir/cache/blob/blobs/sha256");
    assert!(
        !blobs.join(&layer_hex).exists(),
        "the corrupt layer was cached"
    );
    let temps: Vec<_> = std::fs::read_dir(&blobs)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

/// A small tmpfs (mounted by the test, as root) to run out of space on; unmounted on drop.
struct SmallDisk {
    dir: apptainer_tests::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::Builder::new()
            .prefix("full")
            .tempdir_in("/var/tmp")
            .ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0777"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_one_clear_error_and_leaves_nothing() {
    require!(
        ready() && registry_up(),
        "installed apptainer, test user and local registry"
    );
    require!(apptainer_tests::is_root(), "root, to mount a small tmpfs");
    let Some(disk) = SmallDisk::new("600k") else {
        panic!("cannot mount a tmpfs as root");
    };
    // The cache on the full disk: the 1 MiB layer does not fit.
    let tmp = user_tempdir();
    let out = UserCmd::new(&["pull", "--no-https", "x.sif", &docker_ref("busybox:latest")])
        .cwd(tmp.path())
        .env("APPTAINER_CACHEDIR", disk.path().join("c"))
        .run();
    assert_clean_failure(&out, tmp.path(), "No space left on device");
    let blobs = disk.path().join("c/cache/blob/blobs/sha256");
    let partial: Vec<_> = std::fs::read_dir(&blobs)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        partial.iter().all(|n| n.to_string_lossy().len() == 64),
        "partial blobs left: {partial:?}"
    );

    // The output on the full disk: the cached SIF cannot be copied there.
    let out = apptainer_in(
        tmp.path(),
        &[
            "pull",
            "--no-https",
            &format!("{}/x.sif", disk.path().display()),
            &docker_ref("busybox:latest"),
        ],
    );
    out.assert_failure();
    assert!(out.stderr.contains("No space left on device"), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "c")
        .collect();
    assert!(left.is_empty(), "files left on the full disk: {left:?}");
}
