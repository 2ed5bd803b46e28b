//! Reader tests on real images: a generated tree (files of many sizes, sparse and
//! incompressible blocks, a directory big enough for several runs and an index, symlinks,
//! hard links, FIFOs, devices and owners from pseudo definitions, user xattrs with shared
//! out-of-line values) squashed by mksquashfs (gzip, zstd, several block sizes, with and
//! without fragments) and by tar2sqfs, then read back through the same code the FUSE
//! server uses and compared with what was generated. Also: each block is decompressed at
//! most once, and damaged images give errors, never panics.

use crate::archive::{Archive, OpenError};
use crate::dir::Cursor;
use crate::inode::{Body, Kind};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// What one path of the image must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    /// File content or symlink target.
    data: Vec<u8>,
    rdev: u32,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Deterministic bytes: incompressible when `noisy`, else repetitive text.
fn content(len: usize, seed: u64, noisy: bool) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            if noisy {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            } else {
                b"squashfs block straddling text "[(i + seed as usize) % 31]
            }
        })
        .collect()
}

struct Tree {
    expect: BTreeMap<String, Expect>,
    pseudo: Vec<String>,
}

/// Writes the tree under `root`; returns the expectations and the pseudo definitions that
/// add what an unprivileged user cannot create (devices, foreign owners).
fn build_tree(root: &Path, bs: usize, with_xattrs: bool) -> Tree {
    let meta = std::fs::metadata(root).unwrap();
    let (uid, gid) = (meta.uid(), meta.gid());
    let mut expect = BTreeMap::new();
    let mut add = |path: &str, kind, perm, data: Vec<u8>| {
        expect.insert(
            path.to_string(),
            Expect {
                kind,
                perm,
                uid,
                gid,
                data,
                rdev: 0,
                xattrs: Vec::new(),
            },
        );
    };
    add("", Kind::Dir, 0o755, Vec::new());
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sizes = [0, 1, 100, bs - 1, bs, bs + 1, 3 * bs + 17, 5 * bs];
    for (i, &len) in sizes.iter().enumerate() {
        for noisy in [false, true] {
            let name = format!("f{len}-{}", if noisy { "noise" } else { "text" });
            let data = content(len, i as u64, noisy);
            std::fs::write(root.join(&name), &data).unwrap();
            add(&name, Kind::File, 0o644, data);
        }
    }
    // Whole zero blocks between data become sparse blocks.
    let mut sparse = content(bs, 7, true);
    sparse.extend(vec![0u8; 3 * bs]);
    sparse.extend(content(bs / 2, 8, false));
    std::fs::write(root.join("sparse"), &sparse).unwrap();
    add("sparse", Kind::File, 0o644, sparse);
    let exe = content(2000, 9, false);
    std::fs::write(root.join("tool"), &exe).unwrap();
    std::fs::set_permissions(root.join("tool"), std::fs::Permissions::from_mode(0o750)).unwrap();
    add("tool", Kind::File, 0o750, exe);

    // 1500 entries with long names: several runs of 256 and a listing over 8 KiB, so the
    // directory gets an index.
    std::fs::create_dir(root.join("many")).unwrap();
    add("many", Kind::Dir, 0o755, Vec::new());
    for i in 0..1500 {
        let name = format!("many/entry-{i:05}-with-a-rather-long-name");
        let data = format!("{i}\n").into_bytes();
        std::fs::write(root.join(&name), &data).unwrap();
        add(&name, Kind::File, 0o644, data);
    }
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    for d in ["a", "a/b", "a/b/c"] {
        add(d, Kind::Dir, 0o755, Vec::new());
    }
    let long_target = "x/".repeat(150) + "end";
    for (name, target) in [
        ("a/b/c/up", "../../../f1-text"),
        ("long-link", long_target.as_str()),
        ("dangling", "nowhere"),
    ] {
        std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        add(name, Kind::Symlink, 0o777, target.as_bytes().to_vec());
    }
    std::fs::hard_link(root.join("f100-text"), root.join("a/hard")).unwrap();
    add("a/hard", Kind::File, 0o644, content(100, 2, false));
    nix::unistd::mkfifo(
        &root.join("a/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    add("a/fifo", Kind::Fifo, 0o640, Vec::new());

    let pseudo = vec![
        "a/null c 666 0 0 1 3".to_string(),
        "a/disk b 660 0 6 8 17".to_string(),
        "a/sock i 755 0 0 s".to_string(),
        "owned d 2750 1234 5678".to_string(),
        "tool m 4750 4321 8765".to_string(),
    ];
    let mut special = |p: &str, kind, perm, uid, gid, rdev| {
        expect.insert(
            p.to_string(),
            Expect {
                kind,
                perm,
                uid,
                gid,
                data: Vec::new(),
                rdev,
                xattrs: Vec::new(),
            },
        );
    };
    special("a/null", Kind::CharDev, 0o666, 0, 0, 1 << 8 | 3);
    special("a/disk", Kind::BlockDev, 0o660, 0, 6, 8 << 8 | 17);
    special("a/sock", Kind::Socket, 0o755, 0, 0, 0);
    special("owned", Kind::Dir, 0o2750, 1234, 5678, 0);
    let tool = expect.get_mut("tool").unwrap();
    (tool.perm, tool.uid, tool.gid) = (0o4750, 4321, 8765);

    if with_xattrs {
        // The same long value on several files: mksquashfs stores repeats out of line.
        let shared = "v".repeat(300);
        for (p, attrs) in [
            (
                "f1-text",
                vec![("user.one", "1"), ("user.shared", shared.as_str())],
            ),
            ("f100-text", vec![("user.shared", shared.as_str())]),
            (
                "a",
                vec![("user.dir", "yes"), ("user.shared", shared.as_str())],
            ),
        ] {
            for (k, v) in &attrs {
                let script =
                    "import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())";
                let ok = Command::new("python3")
                    .args(["-c", script])
                    .arg(root.join(p))
                    .args([k, v])
                    .status();
                assert!(ok.unwrap().success(), "setting xattrs with python3");
            }
            let mut x: Vec<_> = attrs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            x.sort();
            expect.get_mut(p).unwrap().xattrs = x;
            if p == "f100-text" {
                expect.get_mut("a/hard").unwrap().xattrs = expect["f100-text"].xattrs.clone();
            }
        }
    }
    Tree { expect, pseudo }
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

/// Squashes `tree` with mksquashfs and extra `flags`, with the pseudo definitions.
fn mksquashfs(src: &Path, out: &Path, t: &Tree, flags: &[&str]) {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(src)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(flags);
    for p in &t.pseudo {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "mksquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads every entry of the image into the shape of `Expect`, checking on the way that
/// lookups find what readdir lists and that readdir resumes at every cursor it handed out.
fn read_image(a: &Archive) -> BTreeMap<String, Expect> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), a.sb.root_inode)];
    while let Some((path, r)) = stack.pop() {
        let inode = a.inode(r).unwrap();
        let mut xattrs = a.xattrs(inode.xattr).unwrap();
        xattrs.sort();
        let (data, rdev) = match &inode.body {
            Body::File(f) => (read_whole(a, r, f, inode.size), 0),
            Body::Symlink(t) => (t.clone(), 0),
            Body::Device(d) => (Vec::new(), *d),
            Body::Dir(d) => {
                let entries = list(a, d, Cursor::default());
                for (i, (name, child, kind, next)) in entries.iter().enumerate() {
                    assert_eq!(
                        a.lookup(d, name).unwrap(),
                        Some((*child, *kind)),
                        "lookup {path}/{}",
                        show(name)
                    );
                    if i % 97 == 0 {
                        let rest = list(a, d, *next);
                        assert_eq!(rest.len(), entries.len() - i - 1, "resume in {path}");
                    }
                    let p = if path.is_empty() {
                        show(name)
                    } else {
                        format!("{path}/{}", show(name))
                    };
                    stack.push((p, *child));
                }
                assert_eq!(a.lookup(d, b"not-there").unwrap(), None);
                assert_eq!(a.lookup(d, b"zzzz").unwrap(), None);
                (Vec::new(), 0)
            }
            Body::Ipc => (Vec::new(), 0),
        };
        let e = Expect {
            kind: inode.kind,
            perm: inode.perm,
            uid: inode.uid,
            gid: inode.gid,
            data,
            rdev,
            xattrs,
        };
        out.insert(path, e);
    }
    out
}

type Listed = (Vec<u8>, u64, Kind, Cursor);

fn list(a: &Archive, d: &crate::inode::DirInfo, from: Cursor) -> Vec<Listed> {
    let mut v = Vec::new();
    a.walk_dir(d, from, |e| {
        v.push((e.name.to_vec(), e.inode_ref, e.kind, e.next));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    v
}

fn show(name: &[u8]) -> String {
    String::from_utf8(name.to_vec()).unwrap()
}

/// The whole file, read in odd-sized pieces that straddle block boundaries.
/// Through the shared cache too when `a` has one, as the FUSE side does.
fn read_whole(a: &Archive, r: u64, f: &crate::inode::FileInfo, size: u64) -> Vec<u8> {
    let mut layout = a.file_layout(f, size).unwrap();
    layout.shared = a.shared.as_ref().and_then(|c| c.file(r));
    let mut data = Vec::new();
    loop {
        let piece = a.read_file(&layout, data.len() as u64, 7777).unwrap();
        if piece.is_empty() {
            break;
        }
        data.extend(piece);
    }
    assert!(a.read_file(&layout, size + 10, 100).unwrap().is_empty());
    data
}

fn open(path: &Path) -> Archive {
    match Archive::open(File::open(path).unwrap(), 0) {
        Ok(a) => a,
        Err(OpenError::Unsupported(c)) => panic!("unsupported {c:?}"),
        Err(OpenError::Bad(e)) => panic!("{e}"),
    }
}

fn compare(got: &BTreeMap<String, Expect>, want: &BTreeMap<String, Expect>) {
    let (g, w): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(g, w, "paths differ");
    for (p, e) in want {
        assert_eq!(&got[p], e, "{p:?}");
    }
}

/// Builds the tree and one image per flag set, and checks each.
fn check_mksquashfs(bs: usize, variants: &[&[&str]]) {
    if !have("mksquashfs") {
        eprintln!("SKIPPED: mksquashfs is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir(&src).unwrap();
    let tree = build_tree(&src, bs, true);
    for flags in variants {
        let img = dir.path().join("img.sqfs");
        let mut all = vec!["-b", &*Box::leak(bs.to_string().into_boxed_str())];
        all.extend_from_slice(flags);
        mksquashfs(&src, &img, &tree, &all);
        let a = open(&img);
        compare(&read_image(&a), &tree.expect);
        assert!(
            many_is_indexed(&a),
            "the big directory should have an index ({flags:?})"
        );
    }
}

fn many_is_indexed(a: &Archive) -> bool {
    let root = a.inode(a.sb.root_inode).unwrap();
    let Body::Dir(d) = &root.body else {
        return false;
    };
    let (r, _) = a.lookup(d, b"many").unwrap().unwrap();
    matches!(a.inode(r).unwrap().body, Body::Dir(ref m) if m.index_count > 1)
}

#[test]
fn gzip_images_read_back_as_generated() {
    check_mksquashfs(
        131072,
        &[
            &[],
            &["-no-fragments"],
            &["-always-use-fragments"],
            &["-noI", "-noD", "-noF", "-noX"],
        ],
    );
}

#[test]
fn small_block_images_read_back_as_generated() {
    check_mksquashfs(4096, &[&[], &["-no-fragments", "-no-duplicates"]]);
}

#[test]
fn zstd_images_read_back_as_generated() {
    check_mksquashfs(65536, &[&["-comp", "zstd"]]);
}

#[test]
fn tar2sqfs_images_read_back_as_generated() {
    if !have("tar2sqfs") || !have("mksquashfs") {
        eprintln!("SKIPPED: tar2sqfs is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir(&src).unwrap();
    let mut tree = build_tree(&src, 131072, false);
    // tar2sqfs takes what tar recorded: no pseudo entries, and the root as tar2sqfs makes it.
    for p in ["a/null", "a/disk", "a/sock", "owned"] {
        tree.expect.remove(p);
    }
    let (uid, gid) = (tree.expect[""].uid, tree.expect[""].gid);
    let tool = tree.expect.get_mut("tool").unwrap();
    (tool.perm, tool.uid, tool.gid) = (0o750, uid, gid);
    let img = dir.path().join("img.sqfs");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--numeric-owner", "-cf", "-", "."])
        .output()
        .unwrap();
    let mut child = Command::new("tar2sqfs")
        .args(["-q", "-f", "-c", "gzip"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let a = open(&img);
    let mut got = read_image(&a);
    // tar2sqfs gives its root 0755 root:root unless told otherwise.
    let root = got.get_mut("").unwrap();
    (root.uid, root.gid) = (tree.expect[""].uid, tree.expect[""].gid);
    compare(&got, &tree.expect);
}

#[test]
fn unaligned_reads_decompress_each_block_once() {
    if !have("mksquashfs") {
        eprintln!("SKIPPED: mksquashfs is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir(&src).unwrap();
    let data = content(40 * 4096 + 123, 5, false);
    std::fs::write(src.join("file"), &data).unwrap();
    let img = dir.path().join("img.sqfs");
    mksquashfs(
        &src,
        &img,
        &Tree {
            expect: BTreeMap::new(),
            pseudo: Vec::new(),
        },
        &["-b", "4096"],
    );
    let a = open(&img);
    let root = a.inode(a.sb.root_inode).unwrap();
    let Body::Dir(d) = &root.body else {
        panic!("root is not a directory")
    };
    let (r, _) = a.lookup(d, b"file").unwrap().unwrap();
    let inode = a.inode(r).unwrap();
    let Body::File(f) = &inode.body else {
        panic!("not a file")
    };
    let layout = a.file_layout(f, inode.size).unwrap();
    // Read-around windows like the kernel's: 16-67 KiB at unaligned offsets, twice over.
    for round in 0..2 {
        let mut off = round * 1000;
        while off < data.len() {
            let len = 16384 + (off * 7) % 51200;
            let got = a.read_file(&layout, off as u64, len).unwrap();
            assert_eq!(got, data[off..(off + len).min(data.len())]);
            off += len / 2;
        }
    }
    let blocks = 40 + 1; // 40 full blocks and the fragment holding the tail
    let decompressed = a.counters.data.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=blocks).contains(&decompressed),
        "{decompressed} decompressions for {blocks} blocks"
    );
}

#[test]
fn a_second_server_reads_every_block_from_the_shared_cache() {
    if !have("mksquashfs") {
        eprintln!("SKIPPED: mksquashfs is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir(&src).unwrap();
    let tree = build_tree(&src, 4096, false);
    let img = dir.path().join("img.sqfs");
    mksquashfs(&src, &img, &tree, &["-b", "4096"]);
    // The cache on tmpfs like the real one: its free-space rule is about memory.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let with_cache = || {
        let mut a = open(&img);
        let key = a.key().unwrap();
        a.shared = crate::shared_cache::SharedCache::open_in(shm.path(), "u", &key, 4096);
        assert!(a.shared.is_some());
        a
    };
    let data = |a: &Archive| a.counters.data.load(std::sync::atomic::Ordering::Relaxed);
    let first = with_cache();
    compare(&read_image(&first), &tree.expect);
    assert!(data(&first) > 0, "the first server decompresses");
    let second = with_cache();
    compare(&read_image(&second), &tree.expect);
    assert_eq!(
        data(&second),
        0,
        "the second server decompressed data blocks"
    );
    // A rewritten image (new mtime/ctime) gets a directory of its own.
    mksquashfs(&src, &img, &tree, &["-b", "4096"]);
    let third = with_cache();
    compare(&read_image(&third), &tree.expect);
    assert!(
        data(&third) > 0,
        "a rewritten image must not reuse the old cache"
    );
}

#[test]
fn unsupported_compressors_are_reported_for_the_fallback() {
    if !have("mksquashfs") {
        eprintln!("SKIPPED: mksquashfs is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let img = dir.path().join("img.sqfs");
    let out = Command::new("mksquashfs")
        .arg(dir.path().join("f"))
        .arg(&img)
        .args(["-comp", "xz", "-quiet", "-noappend"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(matches!(
        Archive::open(File::open(&img).unwrap(), 0),
        Err(OpenError::Unsupported(crate::superblock::Compressor::Xz))
    ));
}

#[test]
fn damaged_images_give_errors_not_panics() {
    if !have("mksquashfs") {
        eprintln!("SKIPPED: mksquashfs is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir(&src).unwrap();
    let tree = build_tree(&src, 4096, false);
    let img = dir.path().join("img.sqfs");
    mksquashfs(&src, &img, &tree, &["-b", "4096", "-noI", "-noD"]);
    let good = std::fs::read(&img).unwrap();
    let bad = dir.path().join("bad.sqfs");
    let mut x = 12345u64;
    let mut opened = 0;
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..4 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (x >> 20) as usize % b.len();
            b[at] ^= (x >> 8) as u8 | 1;
        }
        std::fs::write(&bad, &b).unwrap();
        if let Ok(a) = Archive::open(File::open(&bad).unwrap(), 0) {
            walk_leniently(&a);
            opened += 1;
        }
    }
    // Most damage lands in data and tables, past the superblock: those images must be walked.
    assert!(opened > 250, "only {opened} of 300 damaged images opened");
}

/// Touches everything reachable, ignoring errors, with bounds on depth and entries so a
/// damaged image with directory cycles still ends.
fn walk_leniently(a: &Archive) {
    let mut stack = vec![(a.sb.root_inode, 0)];
    let mut seen = 0;
    while let Some((r, depth)) = stack.pop() {
        seen += 1;
        if seen > 5000 || depth > 32 {
            break;
        }
        let Ok(inode) = a.inode(r) else { continue };
        let _ = a.xattrs(inode.xattr);
        match &inode.body {
            Body::Dir(d) => {
                let _ = a.walk_dir(d, Cursor::default(), |e| {
                    stack.push((e.inode_ref, depth + 1));
                    std::ops::ControlFlow::Continue(())
                });
                let _ = a.lookup(d, b"f100-text");
            }
            Body::File(f) => {
                if let Ok(l) = a.file_layout(f, inode.size) {
                    let _ = a.read_file(&l, 0, 1 << 20);
                }
            }
            _ => {}
        }
    }
}
