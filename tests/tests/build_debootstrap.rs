//! `Bootstrap: debootstrap` end to end: a Debian bookworm minbase root made by Debian's
//! debootstrap from this machine's configured Debian mirror, built as the plain test user
//! (fakeroot with its /etc/subuid range: packages own files as their own users) and as
//! root, then checked from the inside (`exec`) and through `inspect`.
//!
//! Needs debootstrap (scripts/install-deps.sh) and the mirror named in the apt sources.

use apptainer_tests::{
    assert_no_leftover_mounts, installed, mounts_snapshot, require, test_user_exists, user_tempdir,
    Out, UserCmd,
};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

const WHY: &str = "installed apptainer, test user, debootstrap and a reachable Debian mirror \
                   in the apt sources (scripts/install-deps.sh, scripts/test-setup.sh)";

/// The first `http://…/debian` URI of the machine's apt sources (one-line or deb822).
fn configured_mirror() -> Option<String> {
    let mut texts: Vec<String> = std::fs::read_to_string("/etc/apt/sources.list")
        .into_iter()
        .collect();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(
            paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
                .filter_map(|p| std::fs::read_to_string(p).ok()),
        );
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("deb ").or_else(|| l.strip_prefix("URIs:"))
        })
        .flat_map(str::split_whitespace)
        .find(|w| w.starts_with("http://") && w.trim_end_matches('/').ends_with("/debian"))
        .map(|w| w.trim_end_matches('/').to_string())
}

/// Whether the mirror serves bookworm's Release file (one plain HTTP request).
fn mirror_serves_bookworm(mirror: &str) -> bool {
    let Some(rest) = mirror.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let Some(addr) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let request = format!(
        "HEAD /{path}/dists/bookworm/Release HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).unwrap_or(0);
    let status = String::from_utf8_lossy(&head[..n]);
    status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200")
}

/// The mirror to build from, when every prerequisite is there.
fn ready() -> Option<String> {
    if !(installed() && test_user_exists() && Path::new("/usr/sbin/debootstrap").is_file()) {
        return None;
    }
    configured_mirror().filter(|m| mirror_serves_bookworm(m))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The command as the test user (or root), with its cache and temporary directory in `dir`.
fn apptainer(dir: &Path, root: bool, args: &[&str]) -> Out {
    let mut cmd = UserCmd::new(args)
        .cwd(dir)
        .env(
            "APPTAINER_CACHEDIR",
            dir.join(if root { "rootcache" } else { "cache" }),
        )
        .env("APPTAINER_TMPDIR", dir.join("tmp"));
    if root {
        cmd = cmd.root();
    }
    cmd.run()
}

/// Builds `def_text` in `dir` as the test user or root; leaves no mount and no build tree.
fn build(dir: &Path, root: bool, def_text: &str) -> String {
    std::fs::create_dir(dir.join("tmp")).unwrap();
    if !root {
        let owner = std::fs::metadata(dir).unwrap();
        std::os::unix::fs::chown(
            dir.join("tmp"),
            Some(std::os::unix::fs::MetadataExt::uid(&owner)),
            Some(std::os::unix::fs::MetadataExt::gid(&owner)),
        )
        .unwrap();
    }
    let def = write(dir, "debian.def", def_text);
    let before = mounts_snapshot();
    let out = apptainer(dir, root, &["build", "debian.sif", &def]);
    out.assert_success();
    assert!(
        out.stderr.contains("Running debootstrap bookworm"),
        "{out:?}"
    );
    assert!(out.stderr.contains("Running testscript"), "{out:?}");
    assert_no_leftover_mounts(&before);
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "build tree left behind: {left:?}");
    dir.join("debian.sif").display().to_string()
}

/// `uid/gid` of each path (relative to /) as stored in the SIF's squashfs, read by
/// `unsquashfs` (independent of the runtime's id mapping).
fn stored_owners(sif: &str, paths: &[&str]) -> Vec<String> {
    let mut f = std::fs::File::open(sif).unwrap();
    let offset = sif::primary_partition(&mut f).unwrap().offset;
    let out = std::process::Command::new("unsquashfs")
        .args(["-lln", "-o", &offset.to_string(), "-d", ""])
        .arg(sif)
        .args(paths)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    paths
        .iter()
        .map(|p| {
            let owner = listing
                .lines()
                .find(|l| l.ends_with(&format!(" /{p}")))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("missing");
            format!("{owner} {p}")
        })
        .collect()
}

#[test]
fn a_plain_user_builds_a_debian_root_and_installs_packages_in_post() {
    let mirror = ready();
    require!(mirror.is_some(), WHY);
    let tmp = user_tempdir();
    let dir = tmp.path();
    // No MirrorURL: the machine's configured mirror is used.
    let sif = build(
        dir,
        false,
        r#"Bootstrap: debootstrap
OSVersion: bookworm
Include: less

%post
    apt-get install -y --no-install-recommends hello
    id -u > /post-uid

%test
    hello | grep -q 'Hello, world!'

%labels
    Maintainer tester
    Flavour minbase
"#,
    );

    let inside = apptainer(
        dir,
        false,
        &[
            "exec",
            &sif,
            "sh",
            "-c",
            "cat /etc/debian_version /post-uid; hello; command -v less; \
             stat -c '%U:%G %n' /usr/bin/hello /etc/passwd /root /etc/shadow /var/cache/apt/archives/partial",
        ],
    );
    inside.assert_success();
    let lines: Vec<&str> = inside.stdout.lines().collect();
    assert!(lines[0].starts_with("12."), "{inside:?}");
    assert_eq!(
        lines[1..],
        [
            "0",
            "Hello, world!",
            "/usr/bin/less",
            "root:root /usr/bin/hello",
            "root:root /etc/passwd",
            "root:root /root",
            // Packages give files to their own users and groups, at debootstrap time and
            // in %post: the subordinate ids of the fakeroot mapping keep them.
            "root:shadow /etc/shadow",
            "_apt:root /var/cache/apt/archives/partial",
        ],
        "{inside:?}"
    );

    assert_eq!(
        stored_owners(
            &sif,
            &[
                "usr/bin/hello",
                "etc/shadow",
                "var/cache/apt/archives/partial"
            ]
        ),
        [
            "0/0 usr/bin/hello",
            "0/42 etc/shadow",
            "42/0 var/cache/apt/archives/partial"
        ]
    );

    let labels = apptainer(dir, false, &["inspect", "--labels", &sif]);
    labels.assert_success();
    for want in [
        "Maintainer: tester",
        "Flavour: minbase",
        "org.label-schema.usage.singularity.deffile.bootstrap: debootstrap",
        "org.label-schema.usage.singularity.deffile.osversion: bookworm",
    ] {
        assert!(
            labels.stdout.lines().any(|l| l == want),
            "{want:?} missing: {labels:?}"
        );
    }
}

#[test]
fn root_builds_a_debian_root_from_the_mirror_url_with_included_packages() {
    let mirror = ready();
    require!(mirror.is_some(), WHY);
    let mirror = mirror.unwrap();
    // The test user's private directory: root's container runs privileged (no user
    // namespace, root's capabilities), so it enters it, and apt in %post switches to its
    // own sandbox user (setgroups), as with the reference.
    let tmp = user_tempdir();
    let dir = tmp.path();
    let sif = build(
        dir,
        true,
        &format!(
            r#"Bootstrap: debootstrap
OSVersion: bookworm
MirrorURL: {mirror}
Include: less

%post
    apt-get install -y --no-install-recommends hello
    id -u > /post-uid

%test
    hello | grep -q 'Hello, world!'

%labels
    Maintainer root-tester
"#
        ),
    );

    let inside = apptainer(
        dir,
        true,
        &[
            "exec",
            &sif,
            "sh",
            "-c",
            "cat /etc/debian_version /post-uid; hello; command -v less",
        ],
    );
    inside.assert_success();
    let lines: Vec<&str> = inside.stdout.lines().collect();
    assert!(lines[0].starts_with("12."), "{inside:?}");
    assert_eq!(
        lines[1..],
        ["0", "Hello, world!", "/usr/bin/less"],
        "{inside:?}"
    );
    // Root's files, and the users and groups packages chose (shadow is 42, _apt 42).
    assert_eq!(
        stored_owners(
            &sif,
            &[
                "usr/bin/hello",
                "etc/passwd",
                "etc/shadow",
                "var/cache/apt/archives/partial"
            ]
        ),
        [
            "0/0 usr/bin/hello",
            "0/0 etc/passwd",
            "0/42 etc/shadow",
            "42/0 var/cache/apt/archives/partial"
        ]
    );
    // The image is readable by anyone: a plain user runs it too.
    let user_tmp = user_tempdir();
    let user = apptainer(user_tmp.path(), false, &["exec", &sif, "hello"]);
    user.assert_success();
    assert_eq!(user.stdout, "Hello, world!\n", "{user:?}");

    let labels = apptainer(dir, true, &["inspect", "--labels", &sif]);
    labels.assert_success();
    for want in [
        "Maintainer: root-tester".to_string(),
        format!("org.label-schema.usage.singularity.deffile.mirrorurl: {mirror}"),
        "org.label-schema.usage.singularity.deffile.include: less".to_string(),
    ] {
        assert!(
            labels.stdout.lines().any(|l| l == want),
            "{want:?} missing: {labels:?}"
        );
    }
}

#[test]
fn a_user_without_a_subuid_range_is_told_what_debootstrap_needs() {
    use apptainer_tests::{account, tempdir_for, TEST_USER2};
    require!(
        installed() && account(TEST_USER2).is_some(),
        "installed apptainer and the second test user apptest2 (scripts/test-setup.sh)"
    );
    let tmp = tempdir_for(TEST_USER2);
    let dir = tmp.path();
    let def = write(
        dir,
        "debian.def",
        "Bootstrap: debootstrap\nOSVersion: bookworm\nMirrorURL: http://127.0.0.1:9/debian\n",
    );
    let out = UserCmd::new(&["build", "debian.sif", &def])
        .user(TEST_USER2)
        .cwd(dir)
        .env("APPTAINER_CACHEDIR", dir.join("cache"))
        .run();
    out.assert_one_error("/etc/subuid");
    assert!(!dir.join("debian.sif").exists());
}
