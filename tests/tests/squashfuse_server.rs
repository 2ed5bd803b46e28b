//! The installed apptainer-squashfuse serving real images, compared with `unsquashfs -d`
//! extractions of the same images: every entry's type, mode, size, link count, symlink
//! target and content hash, plus owners and xattrs where the extraction can hold them.
//! The server runs on a /dev/fuse descriptor mounted in a private mount namespace by a
//! small bash harness, as root and as the unprivileged test user (in a user namespace,
//! as the starter does); it must exit by itself once the mount is gone.
//! The images: a SIF pulled from a fixture, a generated "everything" squashfs (devices,
//! FIFO, sockets, hard links, sparse and fragment files, a 1500-entry directory, xattrs)
//! and, when the benchmark's debian tree exists, a debian-sized image.

use apptainer_tests::launch::pull_fixture;
use apptainer_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The server as `make install` puts it.
fn server() -> PathBuf {
    prefix().join("libexec/apptainer/bin/apptainer-squashfuse")
}

/// Prints the manifest of directory $1: one line per entry, then content hashes, then
/// (with IDS=1) owners and, when python3 exists, xattrs. Directory sizes are left out:
/// squashfs and the extraction's filesystem count them differently.
const MANIFEST: &str = r#"
manifest() {
    cd "$1" || return 1
    if [ "$IDS" = 1 ]; then ids='\t%U\t%G'; else ids=''; fi
    find . ! -type d -printf "%p\t%y\t%m\t%s\t%n\t%l$ids\n" | LC_ALL=C sort
    find . -type d -printf "%p\t%y\t%m$ids\n" | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    if [ "$IDS" = 1 ] && command -v python3 >/dev/null; then
        python3 -c '
import os
for d, dirs, files in sorted(os.walk(".")):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        for k in sorted(os.listxattr(p, follow_symlinks=False)):
            print("xattr", p, k, os.getxattr(p, k, follow_symlinks=False).hex())
'
    fi
    cd /
}
"#;

/// Mounts a FUSE connection on $3 in this (private) mount namespace, serves image $1 at
/// offset $2 with server $4, prints the manifest, unmounts, and fails unless the server
/// then exits with status 0 by itself.
const SERVE: &str = r#"
set -e
img=$1 off=$2 mp=$3 server=$4
exec 3<"$img" 4<>/dev/fuse
mount -i -t fuse -o fd=4,rootmode=40000,user_id=0,group_id=0,ro sqfs "$mp"
"$server" -f -o offset="$off" /dev/fd/3 /dev/fd/4 &
pid=$!
exec 3<&- 4<&-
manifest "$mp"
umount "$mp"
wait "$pid"
"#;

fn manifest_of_extraction(image: &Path, offset: u64, ids: bool) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = Command::new("unsquashfs")
        .args(["-q", "-n", "-o", &offset.to_string(), "-d"])
        .arg(&root)
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unsquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!("{MANIFEST}\nmanifest \"$1\"");
    let out = Command::new("bash")
        .args(["-c", &script, "manifest"])
        .arg(&root)
        .env("IDS", if ids { "1" } else { "0" })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&out.stdout)
}

/// The manifest of the image served by the installed server, as root or as the test user.
fn manifest_served(image: &Path, offset: u64, as_user: bool) -> BTreeSet<String> {
    let mp = tempdir_for(TEST_USER);
    let script = format!("{MANIFEST}\n{SERVE}");
    let mut args: Vec<String> = vec!["--mount".into()];
    if as_user {
        args.splice(0..0, ["--user".into(), "--map-root-user".into()]);
    }
    let extra = [
        image.to_str().unwrap(),
        &offset.to_string(),
        mp.path().to_str().unwrap(),
        server().to_str().unwrap(),
    ]
    .map(String::from);
    args.extend(["bash".into(), "-c".into(), script, "serve".into()]);
    args.extend(extra);
    let cmd = UserCmd::program("unshare", &args).env("IDS", if as_user { "0" } else { "1" });
    let out = if as_user { cmd.run() } else { cmd.root().run() };
    assert!(out.success(), "serving {image:?} failed: {}", out.stderr);
    lines(out.stdout.as_bytes())
}

fn lines(b: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(String::from)
        .collect()
}

fn assert_same(image: &Path, served: &BTreeSet<String>, extracted: &BTreeSet<String>) {
    let missing: Vec<_> = extracted.difference(served).take(10).collect();
    let extra: Vec<_> = served.difference(extracted).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{image:?}: served differs from the extraction\nonly extracted: {missing:#?}\nonly served: {extra:#?}"
    );
    assert!(
        extracted.len() > 3,
        "{image:?}: the manifest is suspiciously short"
    );
}

/// Compares the served image with its extraction as root (owners and xattrs too) and as
/// the test user (in a user namespace, where other owners are unmapped).
/// Returns the root manifest.
fn check(image: &Path, offset: u64) -> BTreeSet<String> {
    let extracted = manifest_of_extraction(image, offset, true);
    assert_same(image, &manifest_served(image, offset, false), &extracted);
    let as_user = manifest_of_extraction(image, offset, false);
    assert_same(image, &manifest_served(image, offset, true), &as_user);
    extracted
}

fn ready() -> bool {
    is_root() && test_user_exists() && server().is_file() && user_namespaces_available()
}

/// Runs `script` with bash to fill the directory `src` (its `$1`).
fn make_tree(src: &Path, script: &str) {
    let out = Command::new("bash")
        .args(["-c", script, "tree"])
        .arg(src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mksquashfs src image` with `opts`, the image made readable for the test user.
fn make_squashfs(src: &Path, image: &Path, opts: &[&str]) {
    let out = Command::new("mksquashfs")
        .arg(src)
        .arg(image)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(opts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mksquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(image, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

#[test]
fn a_pulled_sif_is_served_as_unsquashfs_extracts_it() {
    require!(
        ready(),
        "root, the test user, user namespaces and an installed apptainer-squashfuse"
    );
    require!(
        fixtures().join("stamp").exists(),
        "the test fixtures (scripts/test-setup.sh)"
    );
    let pulled = pull_fixture(TEST_USER, "multilayer", "latest");
    let part =
        sif::read::primary_partition(&mut std::fs::File::open(&pulled.sif).unwrap()).unwrap();
    check(&pulled.sif, part.offset);
}

#[test]
fn every_kind_of_entry_is_served_as_unsquashfs_extracts_it() {
    require!(
        ready(),
        "root, the test user, user namespaces and an installed apptainer-squashfuse"
    );
    let dir = tempdir_for(TEST_USER);
    let src = dir.path().join("tree");
    let script = r#"
set -e
mkdir -p "$1/many" "$1/a/b"
cd "$1"
for i in $(seq 1 1500); do echo $i > many/entry-$i-with-a-long-name; done
head -c 300000 /dev/urandom > noise
yes text | head -c 1000000 > text
{ head -c 131072 /dev/urandom; head -c 400000 /dev/zero; echo tail; } > sparse
: > empty
echo small > a/small
ln a/small a/b/hard
ln -s ../small a/b/up
ln -s "$(printf 'x/%.0s' $(seq 1 200))end" long-link
mkfifo a/fifo
chmod 4755 noise; chmod 0600 text; chmod 1777 a/b
if command -v python3 >/dev/null; then
    python3 -c 'import os; [os.setxattr(p, "user.shared", b"v" * 300) for p in ("text", "a/small", "a")]; os.setxattr("noise", "user.one", b"1")'
fi
"#;
    make_tree(&src, script);
    for comp in ["gzip", "zstd"] {
        let image = dir.path().join(format!("{comp}.sqfs"));
        let pseudo = [
            "-p",
            "a/null c 666 0 0 1 3",
            "-p",
            "a/disk b 660 0 6 8 1",
            "-p",
            "a/sock i 755 0 0 s",
            "-p",
            "owned d 2750 1234 5678",
            "-p",
            "a/small m 644 4321 8765",
        ];
        let opts = [&["-comp", comp, "-b", "65536"][..], &pseudo].concat();
        make_squashfs(&src, &image, &opts);
        let manifest = check(&image, 0);
        if Command::new("python3").arg("-V").output().is_ok() {
            let shared = format!("xattr ./a user.shared {}", "76".repeat(300));
            assert!(manifest.contains(&shared), "the xattrs were not compared");
        }
    }
}

#[test]
fn a_debian_sized_image_is_served_as_unsquashfs_extracts_it() {
    require!(
        ready(),
        "root, the test user, user namespaces and an installed apptainer-squashfuse"
    );
    let tree = Path::new("/var/lib/apptainer-bench/debian-rootfs");
    if !tree.is_dir() {
        // Optional: only benchmark machines have this tree.
        eprintln!("SKIPPED: no debian tree at {tree:?}");
        return;
    }
    let dir = tempdir_for(TEST_USER);
    let image = dir.path().join("debian.sqfs");
    make_squashfs(tree, &image, &[]);
    check(&image, 0);
}

/// The image directory of the shared cache (see squashfuse/src/shared_cache.rs) holding a
/// data file whose content is exactly `content`: the one of our image, whatever its name.
fn cache_dir_holding(content: &[u8]) -> Option<PathBuf> {
    let user = PathBuf::from(format!(
        "/dev/shm/apptainer-squashfuse-{}",
        test_account().uid
    ));
    std::fs::read_dir(user).ok()?.flatten().find_map(|image| {
        let files = std::fs::read_dir(image.path()).ok()?;
        let found = files
            .flatten()
            .any(|f| std::fs::read(f.path()).is_ok_and(|d| d == content));
        found.then(|| image.path())
    })
}

/// Every file of `dir` with extension `ext`.
fn cache_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn sha256_line(content: &[u8], name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), content).unwrap();
    let out = Command::new("sha256sum")
        .arg(dir.path().join("f"))
        .output()
        .unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    format!("{}  {name}", hash.split_whitespace().next().unwrap())
}

/// Successive servers of one image as the test user share decompressed blocks through
/// /dev/shm: the second mount reads them from there (a byte changed under a set marker
/// shows through, which proves it), and a damaged cache (garbage markers over garbage
/// data, markers over truncated data) still serves the image's exact content.
#[test]
fn successive_mounts_share_decompressed_blocks_and_survive_a_damaged_cache() {
    require!(
        ready(),
        "root, the test user, user namespaces and an installed apptainer-squashfuse"
    );
    let dir = tempdir_for(TEST_USER);
    let src = dir.path().join("tree");
    // Compressible (so stored compressed) and unique to this run (so its cache files are
    // found by content): base64 of random bytes, plus a small file that lands in a fragment.
    let script = r#"
set -e
mkdir -p "$1/bin"
head -c 700000 /dev/urandom | base64 > "$1/text"
head -c 3000 /dev/urandom | base64 > "$1/bin/small"
"#;
    make_tree(&src, script);
    let image = dir.path().join("cached.sqfs");
    make_squashfs(&src, &image, &["-b", "65536"]);
    let text = std::fs::read(src.join("text")).unwrap();
    let small = std::fs::read(src.join("bin/small")).unwrap();
    let expected = manifest_of_extraction(&image, 0, false);

    // First mount: decompresses and fills the cache.
    assert_same(&image, &manifest_served(&image, 0, true), &expected);
    let cache = cache_dir_holding(&text).expect("no cache directory holds the served file");
    assert!(
        cache_dir_holding(&small).as_ref() == Some(&cache),
        "the fragment tail was not cached"
    );
    let blocks = text.len().div_ceil(65536);
    let maps = cache_files(&cache, "map");
    assert!(
        maps.iter()
            .any(|m| std::fs::read(m).unwrap() == vec![1u8; blocks]),
        "no marker file with all {blocks} blocks of the big file set"
    );
    let data_of = |content: &[u8]| {
        cache_files(&cache, "data")
            .into_iter()
            .find(|f| std::fs::read(f).unwrap() == content)
            .unwrap()
    };
    let text_data = data_of(&text);

    // Second mount: a byte changed in a block whose marker is set is what gets served.
    let mut changed = text.clone();
    changed[0] = if changed[0] == b'A' { b'B' } else { b'A' };
    std::fs::write(&text_data, &changed).unwrap();
    let served = manifest_served(&image, 0, true);
    assert!(
        served.contains(&sha256_line(&changed, "./text")),
        "the second mount did not read the cache"
    );
    std::fs::write(&text_data, &text).unwrap();

    // Garbage markers (never the "written" value) over garbage data: ignored.
    for m in cache_files(&cache, "map") {
        let len = std::fs::metadata(&m).unwrap().len() as usize;
        let garbage: Vec<u8> = [0xff, 0, 2, 0x80]
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        std::fs::write(&m, garbage).unwrap();
    }
    for d in cache_files(&cache, "data") {
        let len = std::fs::metadata(&d).unwrap().len() as usize;
        std::fs::write(&d, vec![b'X'; len]).unwrap();
    }
    assert_same(&image, &manifest_served(&image, 0, true), &expected);
    // ... and repaired by that mount.
    assert_eq!(std::fs::read(&text_data).unwrap(), text);

    // Set markers over truncated data: short reads are misses.
    for m in cache_files(&cache, "map") {
        let len = std::fs::metadata(&m).unwrap().len() as usize;
        std::fs::write(&m, vec![1u8; len + 3]).unwrap();
    }
    for d in cache_files(&cache, "data") {
        let len = std::fs::metadata(&d).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&d)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
    }
    assert_same(&image, &manifest_served(&image, 0, true), &expected);
    assert_eq!(std::fs::read(&text_data).unwrap(), text);
    std::fs::remove_dir_all(&cache).unwrap();
}
