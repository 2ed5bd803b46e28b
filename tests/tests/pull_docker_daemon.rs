//! `build docker-daemon:IMAGE:TAG` against a real Docker daemon: the test starts Debian's
//! dockerd on its own socket and data root (no networking set-up), loads a fixture
//! archive into it, and converts the image as the test user through `--docker-host`.

use apptainer_tests::{
    fixture_docker_archive, fixtures_built, installed, is_root, require, test_user_exists,
    user_tempdir, UserCmd, TEST_USER,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A dockerd this test started; stopped (by its pid) on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd and unmount what it mounted.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::Builder::new()
        .prefix("dk")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let child = Command::new("dockerd")
        .arg(format!("--host=unix://{}", socket.display()))
        .arg(format!("--data-root={}", dir.path().join("data").display()))
        .arg(format!("--exec-root={}", dir.path().join("exec").display()))
        .arg(format!(
            "--pidfile={}",
            dir.path().join("docker.pid").display()
        ))
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--group",
            TEST_USER,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dockerd");
    let daemon = Daemon {
        child,
        socket,
        _dir: dir,
    };
    // Readiness, not timing: wait for the API to answer, with a generous safety net.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", daemon.socket.display()))
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return daemon;
        }
        assert!(Instant::now() < deadline, "dockerd did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn have(cmd: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(cmd).is_file())
}

#[test]
fn build_from_docker_daemon_converts_the_loaded_image() {
    require!(
        installed() && test_user_exists() && fixtures_built() && is_root(),
        "installed apptainer, test user, fixtures, and root to start dockerd"
    );
    require!(
        have("dockerd") && have("docker"),
        "Debian's docker.io (dockerd and docker)"
    );
    let daemon = start_daemon();
    let host = format!("unix://{}", daemon.socket.display());
    let load = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["load", "-i"])
        .arg(fixture_docker_archive("multilayer", "latest"))
        .output()
        .expect("docker load");
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );

    let tmp = user_tempdir();
    let run = |args: &[&str]| {
        UserCmd::new(args)
            .cwd(tmp.path())
            .env("APPTAINER_CACHEDIR", tmp.path().join("cachedir"))
            .env("DOCKER_HOST", &host)
            .run()
    };
    let out = run(&["build", "dd.sif", "docker-daemon:test/multilayer:latest"]);
    out.assert_success();
    assert!(
        out.stderr.contains("INFO:    Build complete: dd.sif"),
        "{out:?}"
    );
    let mut f = std::fs::File::open(tmp.path().join("dd.sif")).unwrap();
    let offset = sif::primary_partition(&mut f).expect("a SIF").offset;
    let cat = Command::new("unsquashfs")
        .args(["-cat", "-o", &offset.to_string()])
        .arg(tmp.path().join("dd.sif"))
        .arg("data/keep.txt")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout).trim(), "keep v2");

    let no_tag = run(&["build", "x.sif", "docker-daemon:test/multilayer"]);
    no_tag.assert_failure();
    assert!(
        no_tag.stderr.contains("the tag must be included"),
        "{no_tag:?}"
    );
    let unknown = run(&["build", "y.sif", "docker-daemon:test/nothere:latest"]);
    unknown.assert_failure();
    assert!(unknown.stderr.contains("HTTP 404"), "{unknown:?}");
    assert!(!tmp.path().join("x.sif").exists() && !tmp.path().join("y.sif").exists());
}
