//! The cache under concurrency and interruption: ten simultaneous pulls of one image all
//! succeed and leave exactly one converted SIF and one copy of each blob; a pull killed in
//! the middle of a download leaves no output file and no cache entry, and the next pull
//! works.

use apptainer_tests::{
    docker_ref, installed, registry_up, require, test_user_exists, user_tempdir, UserCmd,
};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn names_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(r) => {
            let mut v: Vec<String> = r
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

#[test]
fn ten_concurrent_pulls_of_one_image_share_one_cache_entry() {
    require!(
        installed() && test_user_exists() && registry_up(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let tmp = user_tempdir();
    let dir = tmp.path().to_path_buf();
    let reference = docker_ref("multilayer:latest");
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let dir = dir.clone();
            let reference = reference.clone();
            std::thread::spawn(move || {
                UserCmd::new(&["pull", "--no-https", &format!("out{i}.sif"), &reference])
                    .cwd(&dir)
                    .env("APPTAINER_CACHEDIR", dir.join("cachedir"))
                    .run()
            })
        })
        .collect();
    let outs: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("pull thread"))
        .collect();
    for out in &outs {
        out.assert_success();
    }
    let cache = dir.join("cachedir/cache");
    let entries = names_in(&cache.join("oci-tmp"));
    assert_eq!(
        entries.len(),
        1,
        "one converted SIF, no temp files: {entries:?}"
    );
    let blobs = names_in(&cache.join("blob/blobs/sha256"));
    assert!(
        blobs.iter().all(|n| n.len() == 64),
        "only complete blobs: {blobs:?}"
    );
    // config + 4 layers
    assert_eq!(blobs.len(), 5, "{blobs:?}");
    let cached = std::fs::read(cache.join("oci-tmp").join(&entries[0])).unwrap();
    for i in 0..10 {
        let copy = std::fs::read(dir.join(format!("out{i}.sif"))).unwrap();
        assert!(copy == cached, "out{i}.sif differs from the cache entry");
    }
    let mut f = std::fs::File::open(dir.join("out0.sif")).unwrap();
    sif::primary_partition(&mut f).expect("a valid SIF");
}

/// A registry whose layer download stalls half-way, so the pull can be killed mid-blob.
/// Returns its address.
fn start_stalling_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_hex = sha256_hex(&config);
    let layer_hex = "ab".repeat(32);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{layer_hex}","size":1000000}}]}}"#,
        config.len()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let manifest = manifest.clone();
            let config = config.clone();
            let config_hex = config_hex.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let head = line.starts_with("HEAD");
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let (ct, body): (&str, Vec<u8>) = if path.ends_with("/manifests/1") {
                        (
                            "application/vnd.oci.image.manifest.v1+json",
                            manifest.clone().into_bytes(),
                        )
                    } else if path.ends_with(&config_hex) {
                        ("application/octet-stream", config.clone())
                    } else if path.contains("/blobs/") {
                        // Half the layer, then silence until the client goes away.
                        let _ =
                            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
                        let _ = stream.write_all(&vec![7u8; 500_000]);
                        std::thread::sleep(Duration::from_secs(600));
                        return;
                    } else {
                        ("application/json", b"{}".to_vec())
                    };
                    let mut resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    if !head {
                        resp.extend_from_slice(&body);
                    }
                    if stream.write_all(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// `apptainer pull` of the stalling registry's image into `dir`, as the test user.
fn start_stalled_pull(addr: &str, dir: &Path) -> Child {
    let image = format!("docker://{addr}/slow/img:1");
    UserCmd::new(&["pull", "--no-https", "stalled.sif", &image])
        .env("HOME", dir)
        .env("APPTAINER_CACHEDIR", dir.join("cachedir"))
        .cwd(dir)
        .spawn()
}

/// Waits until the layer download has started: its temp file exists in `blobs`.
fn wait_for_the_download(child: &mut Child, blobs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !names_in(blobs).iter().any(|n| n.starts_with(".tmp-abab")) {
        assert!(Instant::now() < deadline, "the download never started");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("apptainer exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_pull_leaves_no_partial_sif_and_no_cache_entry() {
    require!(
        installed() && test_user_exists() && registry_up(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let addr = start_stalling_registry();
    let tmp = user_tempdir();
    let dir = tmp.path();
    let cache = dir.join("cachedir/cache");
    let mut child = start_stalled_pull(&addr, dir);
    // Wait until the layer download has started (its temp file exists), then kill -9.
    let blobs = cache.join("blob/blobs/sha256");
    wait_for_the_download(&mut child, &blobs);
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(!dir.join("stalled.sif").exists(), "a partial SIF was left");
    let visible: Vec<String> = names_in(dir)
        .into_iter()
        .filter(|n| n != "cachedir")
        .collect();
    assert!(visible.is_empty(), "files left: {visible:?}");
    assert!(
        !blobs.join("ab".repeat(32)).exists(),
        "a partial blob became a cache entry"
    );
    assert!(
        names_in(&cache.join("oci-tmp")).is_empty(),
        "a SIF cache entry was left"
    );

    // The cache still works for the next pull.
    let next = UserCmd::new(&[
        "pull",
        "--no-https",
        "ok.sif",
        &docker_ref("busybox:latest"),
    ])
    .cwd(dir)
    .env("APPTAINER_CACHEDIR", dir.join("cachedir"))
    .run();
    next.assert_success();
    let list = UserCmd::new(&["cache", "list"])
        .env("APPTAINER_CACHEDIR", dir.join("cachedir"))
        .run();
    list.assert_success();
    assert!(
        list.stdout.contains("There are 1 container file(s)"),
        "{list:?}"
    );
}

#[test]
fn sigterm_mid_download_removes_the_blob_temp_file_and_exits_143() {
    require!(
        installed() && test_user_exists() && registry_up(),
        "installed apptainer, test user and local registry (scripts/test-setup.sh)"
    );
    let addr = start_stalling_registry();
    let tmp = user_tempdir();
    let dir = tmp.path();
    let blobs = dir.join("cachedir/cache/blob/blobs/sha256");
    let mut child = start_stalled_pull(&addr, dir);
    wait_for_the_download(&mut child, &blobs);
    // Our own child, not reaped yet: the pid cannot have been reused.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
    let left: Vec<String> = names_in(&blobs)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    assert!(!dir.join("stalled.sif").exists());
}
