//! OCI layer merging and extraction (frontend/src/convert) on arbitrary tar layers: the
//! headers are merged into the in-memory tree, which is then written both as the tar
//! stream the SIF's squashfs is made from and into a scratch directory, as a sandbox
//! build would. Layers come from any registry, so beyond "no panic" every name handed to
//! an output must stay inside the root (attack class T36: `..`, absolute names, symlinked
//! parents, hardlinks and whiteouts pointing outside), and a canary directory beside the
//! scratch root must be untouched afterwards.
//!
//! Input: up to four uncompressed tar layers, bottom first, separated by `LAYER_SEP`.
//! Decompression (flate2, zstd) is left out: those crates are fuzzed upstream.
//!
//! The frontend is a binary crate, so the convert files that need nothing outside the
//! module (tree, scan, emit, sandbox, tarsink) are compiled in here by path, with stubs
//! for the frontend's `debug!` and `log::progress_enabled` they use. A small library target in the frontend would make
//! this independent of the module's file layout.
#![no_main]

use std::cell::RefCell;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

use anyhow::Result;
use libfuzzer_sys::fuzz_target;

/// The frontend's `debug!` log macro; the fuzzer does not print.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {{
        let _ = format_args!($($arg)*);
    }};
}

/// The one function of the frontend's `log` module the convert files call.
mod log {
    /// No progress bars while fuzzing.
    pub fn progress_enabled() -> bool {
        false
    }
}

#[path = "frontend_convert.rs"]
mod convert;

use convert::emit::{emit, Sink};
use convert::tree::{Kind, Meta};

const LAYER_SEP: &[u8] = b"\n==LAYER==\n";
const MAX_LAYERS: usize = 4;
const CANARY: &[u8] = b"must not change\n";

fuzz_target!(|data: &[u8]| {
    let layers: Vec<Vec<u8>> = split_layers(data);
    let open =
        |i: usize| -> Result<Box<dyn Read + Send>> { Ok(Box::new(Cursor::new(layers[i].clone()))) };
    let Ok(tree) = convert::scan::build_tree(layers.len(), &open) else {
        return;
    };
    let _ = tree.warnings();
    let _ = tree.visit(|path, _| {
        check_name(path, "tree");
        Ok::<(), ()>(())
    });
    to_tar(&tree, &open, layers.len());
    to_directory(&tree, &open, layers.len());
});

fn split_layers(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < MAX_LAYERS {
        match rest.windows(LAYER_SEP.len()).position(|w| w == LAYER_SEP) {
            Some(i) => {
                out.push(rest[..i].to_vec());
                rest = &rest[i + LAYER_SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest.to_vec());
    out
}

/// A name relative to the root: no leading `/`, no empty, `.` or `..` component.
fn check_name(path: &[u8], what: &str) {
    if path.is_empty() {
        return; // the root itself
    }
    assert!(
        path.split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".."),
        "{what}: name {:?} is not a clean relative path",
        String::from_utf8_lossy(path)
    );
}

/// Checks every name before passing it on to the real sink.
struct Checked<'a>(&'a mut dyn Sink);

impl Sink for Checked<'_> {
    fn dir(&mut self, path: &[u8], meta: &Meta) -> Result<()> {
        check_name(path, "dir");
        self.0.dir(path, meta)
    }
    fn file(&mut self, path: &[u8], meta: &Meta, size: u64, data: &mut dyn Read) -> Result<()> {
        assert!(!path.is_empty(), "a file as the root");
        check_name(path, "file");
        self.0.file(path, meta, size, data)
    }
    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> Result<()> {
        assert!(!path.is_empty(), "a symlink as the root");
        check_name(path, "symlink");
        self.0.symlink(path, meta, target)
    }
    fn special(&mut self, path: &[u8], meta: &Meta, kind: &Kind) -> Result<()> {
        assert!(!path.is_empty(), "a device as the root");
        check_name(path, "special");
        self.0.special(path, meta, kind)
    }
    fn hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<()> {
        assert!(
            !path.is_empty() && !target.is_empty(),
            "a hardlink to or as the root"
        );
        check_name(path, "hardlink");
        check_name(target, "hardlink target");
        self.0.hardlink(path, target)
    }
    fn finish(&mut self) -> Result<()> {
        self.0.finish()
    }
}

/// A writer whose bytes stay reachable after the sink that owns it is gone.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The stream tar2sqfs reads: every entry `./NAME` with a clean name and in-root links.
fn to_tar(tree: &convert::tree::Tree, open: &convert::scan::OpenLayer<'_>, layers: usize) {
    let out = Shared::default();
    let mut sink = convert::tarsink::TarSink::new(out.clone());
    if emit(tree, open, layers, &mut Checked(&mut sink)).is_err() {
        return;
    }
    let bytes = out.0.borrow().clone();
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    for entry in archive.entries().expect("our own tar stream reads") {
        let entry = entry.expect("our own tar entry reads");
        let name = entry.path_bytes().into_owned();
        let rel = name.strip_prefix(b"./").expect("names start with ./");
        check_name(rel.strip_suffix(b"/").unwrap_or(rel), "tar entry");
        if entry.header().entry_type() == tar::EntryType::Link {
            let target = entry.link_name_bytes().expect("hardlink has a target");
            let rel = target.strip_prefix(b"./").unwrap_or(&target);
            check_name(rel, "tar hardlink target");
        }
    }
}

/// Scratch place for extraction: `root` (emptied each run) and a `canary` directory beside
/// it. Under the fuzz crate's own target directory, not a shared /tmp.
fn scratch() -> &'static (PathBuf, PathBuf) {
    static S: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    S.get_or_init(|| {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("unpack-scratch-{}", std::process::id()));
        let canary = base.join("canary");
        fs::create_dir_all(&canary).expect("create scratch");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).expect("chmod scratch");
        fs::write(canary.join("file"), CANARY).expect("write canary");
        (base.join("root"), canary)
    })
}

/// What `extract` in convert/mod.rs does, into the scratch root, as a plain user would
/// (no chown, no device nodes).
fn to_directory(tree: &convert::tree::Tree, open: &convert::scan::OpenLayer<'_>, layers: usize) {
    let (root, canary) = scratch();
    fs::create_dir(root).expect("create scratch root");
    let fd: std::os::fd::OwnedFd = fs::File::open(root).expect("open scratch root").into();
    let mut sink = convert::sandbox::DirSink::new(fd, false, false);
    let _ = emit(tree, open, layers, &mut Checked(&mut sink));
    check_canary(canary);
    let base = root.parent().expect("scratch base");
    let names: Vec<_> = fs::read_dir(base)
        .expect("list scratch")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        names.len() == 2,
        "extraction created {names:?} beside its root"
    );
    remove_tree(root);
}

fn check_canary(canary: &Path) {
    let names: Vec<_> = fs::read_dir(canary)
        .expect("list canary")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        ["file"],
        "extraction wrote into the canary directory"
    );
    let meta = fs::symlink_metadata(canary.join("file")).expect("canary");
    assert!(meta.is_file(), "canary replaced");
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&meta),
        1,
        "canary hardlinked"
    );
    assert_eq!(fs::read(canary.join("file")).expect("read canary"), CANARY);
}

/// Removes the extracted tree without following symlinks, making directories writable.
fn remove_tree(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                remove_tree(&e.path());
            }
        }
        fs::remove_dir(path).expect("remove scratch dir");
    } else {
        fs::remove_file(path).expect("remove scratch file");
    }
}
