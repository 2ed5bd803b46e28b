//! Conversion tests on hand-made layers: the SIF's squashfs is checked independently
//! with `unsquashfs` at the partition offset, the descriptors with the `sif` reader,
//! and the sandbox by looking at the directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::oci::{FetchedImage, Layer};

/// Builds a tar layer in memory.
struct LayerBuilder(tar::Builder<Vec<u8>>);

impl LayerBuilder {
    fn new() -> Self {
        LayerBuilder(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        h
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn owned_file(mut self, path: &str, data: &[u8], uid: u64, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn symlink(self, path: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, path, target)
    }
    fn hardlink(self, path: &str, target: &str) -> Self {
        self.link(tar::EntryType::Link, path, target)
    }
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// A three-layer image (gzip, zstd, plain) with whiteouts, an opaque directory,
/// symlinks, hardlinks and entries that try to leave the root.
fn fixture(dir: &Path) -> FetchedImage {
    let l1 = LayerBuilder::new()
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/gone", b"x")
        .dir("opt/", 0o755)
        .file("opt/old", b"old")
        .dir("usr/bin/", 0o755)
        .owned_file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 1000, 0o4755)
        .symlink("bin", "usr/bin")
        .hardlink("usr/bin/tool-link", "usr/bin/tool")
        .dir("locked/", 0o500)
        .file("locked/inside", b"in")
        .finish();
    let l2 = LayerBuilder::new()
        .file("etc/.wh.gone", b"")
        .dir("opt/", 0o755)
        .file("opt/.wh..wh..opq", b"")
        .file("opt/new", b"new")
        .file("bin/via-symlink", b"through the symlink")
        .symlink("escape", "../../../../../tmp")
        .finish();
    let l3 = LayerBuilder::new()
        .file("escape/outside-convert-test", b"must stay inside")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/bash\n")
        .finish();
    // A layer written by our own tar writer, for its PAX xattr records.
    let mut sink = super::tarsink::TarSink::new(Vec::new());
    let meta = super::tree::Meta {
        mode: 0o644,
        xattrs: Some(Box::new(vec![(b"user.test".to_vec(), b"yes".to_vec())])),
        ..Default::default()
    };
    super::emit::Sink::file(&mut sink, b"xattr-file", &meta, 2, &mut &b"x\n"[..]).unwrap();
    super::emit::Sink::finish(&mut sink).unwrap();
    let l4 = sink.into_inner();
    let blobs = [
        (gzip(&l1), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (zstd(&l2), "application/vnd.oci.image.layer.v1.tar+zstd"),
        (l3, "application/vnd.oci.image.layer.v1.tar"),
        (l4, "application/vnd.oci.image.layer.v1.tar"),
    ];
    let layers = blobs
        .into_iter()
        .enumerate()
        .map(|(i, (data, media_type))| {
            let path = dir.join(format!("layer{i}"));
            fs::write(&path, &data).unwrap();
            Layer {
                digest: format!("sha256:{i}"),
                size: data.len() as u64,
                media_type: media_type.into(),
                path,
            }
        })
        .collect();
    FetchedImage {
        reference: "docker://127.0.0.1:5000/test/fixture:1".into(),
        manifest_digest: "sha256:abc".into(),
        config: br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/tool"],
            "Cmd":["--help"],"Env":["PATH=/usr/bin:/bin","GREETING=hi there"],
            "Labels":{"maintainer":"me"}}}"#
            .to_vec(),
        layers,
        platform: "linux/amd64".into(),
    }
}

fn have(program: &str) -> bool {
    squashfs::find_program(program).is_some()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `unsquashfs -lln` of the primary partition, as `path -> (mode string, owner)`.
fn list_squashfs(sif_path: &Path) -> Vec<(String, String, String)> {
    let mut f = fs::File::open(sif_path).unwrap();
    let part = sif::primary_partition(&mut f).unwrap();
    let out = Command::new("unsquashfs")
        .arg("-lln")
        .arg("-o")
        .arg(part.offset.to_string())
        .arg(sif_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let path_start = l.find("squashfs-root").unwrap();
            let rest = &l[path_start + "squashfs-root".len()..];
            let path = rest.split(" -> ").next().unwrap().to_string();
            (path, fields[0].to_string(), fields[1].to_string())
        })
        .collect()
}

/// The `user.test` xattr of a file, if the filesystem kept it.
fn user_xattr(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::getxattr(path, "user.test", &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn cat_squashfs(sif_path: &Path, path: &str, dir: &Path) -> Vec<u8> {
    let mut f = fs::File::open(sif_path).unwrap();
    let part = sif::primary_partition(&mut f).unwrap();
    let dest = dir.join(format!("cat-{}", path.replace('/', "_")));
    let out = Command::new("unsquashfs")
        .args(["-f", "-d"])
        .arg(&dest)
        .arg("-o")
        .arg(part.offset.to_string())
        .arg(sif_path)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(dest.join(path.trim_start_matches('/'))).unwrap()
}

fn entry<'a>(
    list: &'a [(String, String, String)],
    path: &str,
) -> Option<&'a (String, String, String)> {
    list.iter().find(|(p, _, _)| p == path)
}

#[test]
fn a_sif_holds_the_merged_layers_and_the_reference_objects() {
    if !have("tar2sqfs") || !have("unsquashfs") {
        eprintln!("SKIPPED: tar2sqfs and unsquashfs needed");
        return;
    }
    let dir = tempdir();
    let image = fixture(dir.path());
    let out = dir.path().join("out.sif");
    let opts = ConvertOptions {
        tmpdir: dir.path().to_path_buf(),
        ..ConvertOptions::default()
    };
    to_sif(&image, &out, &opts).unwrap();

    let list = list_squashfs(&out);
    let paths: Vec<&str> = list.iter().map(|(p, _, _)| p.as_str()).collect();
    // Whiteout and opaque directory.
    assert!(!paths.contains(&"/etc/gone"), "{paths:?}");
    assert!(!paths.contains(&"/opt/old"), "{paths:?}");
    assert!(paths.contains(&"/opt/new"));
    assert!(!paths.iter().any(|p| p.contains(".wh.")), "{paths:?}");
    // A file written through the `bin` symlink lands in usr/bin; `escape` stays inside.
    assert!(paths.contains(&"/usr/bin/via-symlink"));
    assert!(paths.contains(&"/tmp/outside-convert-test"));
    assert_eq!(entry(&list, "/bin").unwrap().1.chars().next(), Some('l'));
    // Ownership and setuid bits as the layer says; the upper layer's passwd wins.
    let tool = entry(&list, "/usr/bin/tool").unwrap();
    assert_eq!(
        (tool.1.as_str(), tool.2.as_str()),
        ("-rwsr-xr-x", "1000/1000")
    );
    assert_eq!(entry(&list, "/locked").unwrap().1, "dr-x------");
    assert_eq!(
        cat_squashfs(&out, "/etc/passwd", dir.path()),
        b"root:x:0:0::/root:/bin/bash\n"
    );
    assert_eq!(
        cat_squashfs(&out, "/usr/bin/tool-link", dir.path()),
        b"#!/bin/sh\necho tool\n"
    );
    cat_squashfs(&out, "/xattr-file", dir.path());
    let extracted = dir.path().join("cat-_xattr-file/xattr-file");
    assert_eq!(user_xattr(&extracted), Some(b"yes".to_vec()));
    // /.singularity.d and the root symlinks.
    for p in [
        "/.singularity.d/actions/exec",
        "/.singularity.d/actions/run",
        "/.singularity.d/actions/shell",
        "/.singularity.d/actions/start",
        "/.singularity.d/actions/test",
        "/.singularity.d/env/01-base.sh",
        "/.singularity.d/env/10-docker2singularity.sh",
        "/.singularity.d/env/90-environment.sh",
        "/.singularity.d/env/94-appsbase.sh",
        "/.singularity.d/env/95-apps.sh",
        "/.singularity.d/env/99-base.sh",
        "/.singularity.d/env/99-runtimevars.sh",
        "/.singularity.d/runscript",
        "/.singularity.d/labels.json",
        "/.singularity.d/libs",
        "/singularity",
        "/.run",
        "/.exec",
        "/.test",
        "/.shell",
        "/environment",
        "/dev",
        "/proc",
        "/sys",
        "/home",
        "/root",
        "/var/tmp",
        "/etc/hosts",
        "/etc/resolv.conf",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let env = cat_squashfs(
        &out,
        "/.singularity.d/env/10-docker2singularity.sh",
        dir.path(),
    );
    assert!(String::from_utf8(env)
        .unwrap()
        .contains("export GREETING=\"${GREETING:-\"hi there\"}\""));
    let labels: serde_json::Value = serde_json::from_slice(&cat_squashfs(
        &out,
        "/.singularity.d/labels.json",
        dir.path(),
    ))
    .unwrap();
    assert_eq!(labels["maintainer"], "me");
    assert_eq!(
        labels["org.label-schema.usage.singularity.deffile.bootstrap"],
        "docker"
    );
    assert_eq!(labels["org.opencontainers.image.architecture"], "amd64");

    // Descriptors: definition, two JSON objects, primary squashfs partition.
    let mut f = fs::File::open(&out).unwrap();
    let img = sif::Image::load(&mut f).unwrap();
    let kinds: Vec<(sif::DataType, String)> =
        img.descriptors().map(|d| (d.data_type, d.name())).collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(kinds[0].0, sif::DataType::Deffile);
    assert_eq!(
        kinds[1],
        (
            sif::DataType::GenericJson,
            "inspect-metadata.json".to_string()
        )
    );
    assert_eq!(
        kinds[2],
        (sif::DataType::GenericJson, "oci-config.json".to_string())
    );
    assert_eq!(kinds[3].0, sif::DataType::Partition);
    let ids: Vec<u32> = img.descriptors().map(|d| d.id).collect();
    let deffile = img.read_object(&mut f, ids[0]).unwrap();
    assert_eq!(
        deffile,
        b"bootstrap: docker\nfrom: 127.0.0.1:5000/test/fixture:1\n\n"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&img.read_object(&mut f, ids[2]).unwrap()).unwrap();
    assert_eq!(config["Entrypoint"][0], "/bin/tool");
    // No temporary file is left beside the output or in tmpdir.
    let left: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("layer")
        })
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("cat-"))
        .collect();
    assert_eq!(left, std::slice::from_ref(&out));
}

#[test]
fn the_mksquashfs_route_packs_the_same_tree() {
    if !have("tar2sqfs") || !have("mksquashfs") || !have("unsquashfs") {
        eprintln!("SKIPPED: tar2sqfs, mksquashfs and unsquashfs needed");
        return;
    }
    let dir = tempdir();
    let image = fixture(dir.path());
    let mut lists = Vec::new();
    for packer in [Packer::Tar2sqfs, Packer::Mksquashfs] {
        let out = dir.path().join(format!("{packer:?}.sif"));
        let opts = ConvertOptions {
            tmpdir: dir.path().to_path_buf(),
            packer,
            ..ConvertOptions::default()
        };
        to_sif(&image, &out, &opts).unwrap();
        // Ownership differs when not root (extraction makes the caller the owner), so
        // compare names, types and permission bits.
        let mut l: Vec<(String, String)> = list_squashfs(&out)
            .into_iter()
            .map(|(p, m, _)| (p, m))
            .collect();
        l.sort();
        lists.push(l);
    }
    assert_eq!(lists[0], lists[1]);
}

#[test]
fn a_sandbox_holds_the_merged_layers_inside_its_directory() {
    let dir = tempdir();
    let image = fixture(dir.path());
    let root = dir.path().join("sandbox");
    let opts = ConvertOptions {
        tmpdir: dir.path().to_path_buf(),
        fix_perms: false,
        ..ConvertOptions::default()
    };
    to_sandbox(&image, &root, &opts).unwrap();
    assert_eq!(
        fs::read(root.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/bash\n"
    );
    assert!(!root.join("etc/gone").exists());
    assert!(!root.join("opt/old").exists());
    assert!(root.join("opt/new").exists());
    assert_eq!(
        fs::read(root.join("usr/bin/via-symlink")).unwrap(),
        b"through the symlink"
    );
    assert_eq!(
        fs::read(root.join("tmp/outside-convert-test")).unwrap(),
        b"must stay inside"
    );
    assert!(fs::symlink_metadata(root.join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    let tool = fs::metadata(root.join("usr/bin/tool")).unwrap();
    let link = fs::metadata(root.join("usr/bin/tool-link")).unwrap();
    assert_eq!(tool.ino(), link.ino());
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        fs::metadata(root.join("locked"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o500
    );
    assert!(root.join(".singularity.d/runscript").exists());
    assert_eq!(user_xattr(&root.join("xattr-file")), Some(b"yes".to_vec()));
    assert_eq!(
        fs::read_link(root.join("singularity")).unwrap(),
        PathBuf::from(".singularity.d/runscript")
    );
    // Nothing was written outside the sandbox, and no temporary directory is left.
    assert!(!Path::new("/tmp/outside-convert-test").exists());
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // The sandbox can be removed by its owner once modes allow it.
    super::remove_tree(&root);
    assert!(!root.exists());
}

#[test]
fn fix_perms_gives_the_owner_rwx() {
    let dir = tempdir();
    let image = fixture(dir.path());
    let root = dir.path().join("sandbox");
    let opts = ConvertOptions {
        tmpdir: dir.path().to_path_buf(),
        fix_perms: true,
        procs: 1,
        ..ConvertOptions::default()
    };
    to_sandbox(&image, &root, &opts).unwrap();
    assert_eq!(
        fs::metadata(root.join("locked"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    fs::remove_dir_all(&root).unwrap();
    if have("tar2sqfs") && have("unsquashfs") {
        let out = dir.path().join("fixed.sif");
        to_sif(&image, &out, &opts).unwrap();
        let list = list_squashfs(&out);
        assert_eq!(entry(&list, "/locked").unwrap().1, "drwx------");
    }
}

#[test]
fn a_corrupt_layer_fails_and_leaves_no_output() {
    let dir = tempdir();
    let mut image = fixture(dir.path());
    let bad = dir.path().join("bad");
    let mut data = gzip(&LayerBuilder::new().file("a", &[7u8; 100_000]).finish());
    let n = data.len();
    data.truncate(n / 2);
    fs::write(&bad, &data).unwrap();
    image.layers[1].path = bad;
    image.layers[1].media_type = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    let out = dir.path().join("out.sif");
    let opts = ConvertOptions {
        tmpdir: dir.path().to_path_buf(),
        ..ConvertOptions::default()
    };
    assert!(to_sif(&image, &out, &opts).is_err());
    assert!(!out.exists());
    let sandbox = dir.path().join("sb");
    assert!(to_sandbox(&image, &sandbox, &opts).is_err());
    assert!(!sandbox.exists());
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.starts_with("squashfs-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn gnu_sparse_files_become_plain_files() {
    if !have("tar") {
        eprintln!("SKIPPED: GNU tar needed to make a sparse archive");
        return;
    }
    let dir = tempdir();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("sparse.bin")).unwrap();
    f.set_len(5 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"hello", 3_000_000).unwrap();
    let archive = dir.path().join("sparse.tar");
    let ok = Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("sparse.bin")
        .status()
        .unwrap();
    assert!(ok.success());
    let data = fs::read(&archive).unwrap();
    let open = |_: usize| -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(data.clone())))
    };
    let tree = scan::build_tree(1, &open).unwrap();
    let mut sink = tarsink::TarSink::new(Vec::new());
    emit::emit(&tree, &open, 1, &mut sink).unwrap();
    let out = sink.into_inner();
    let mut ar = tar::Archive::new(out.as_slice());
    let mut found = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().as_ref() == b"./sparse.bin" {
            assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut content).unwrap();
            assert_eq!(content.len(), 5 << 20);
            assert_eq!(&content[3_000_000..3_000_005], b"hello");
            found = true;
        }
    }
    assert!(found);
}
