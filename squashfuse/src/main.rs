//! apptainer-squashfuse: serves the squashfs partition of an image on a FUSE connection the
//! starter has already mounted, decompressing each block at most once per mount (Debian's
//! squashfuse_ll keeps one decompressed block, so the kernel's unaligned read-around
//! requests decompress the same blocks again and again).
//!
//! Invoked as `apptainer-squashfuse -f -o offset=N /dev/fd/IMAGE /dev/fd/FUSE` with both
//! descriptors inherited. Images whose compressor this server does not decode (lzma, lzo,
//! xz, lz4) are handed, with the same arguments and descriptors, to squashfuse_ll.
//! The server exits when the kernel ends the session (unmount, or the container's mount
//! namespace going away).

#![forbid(unsafe_code)]

mod archive;
mod args;
mod cache;
mod compress;
mod dir;
mod error;
mod file;
mod fs;
mod inode;
mod shared_cache;
mod superblock;
mod xattr;

#[cfg(test)]
mod reader_tests;

use archive::{Archive, OpenError};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// The server for compressors we do not decode; the starter's previous default.
const FALLBACK: &str = "/usr/bin/squashfuse_ll";

fn main() -> ExitCode {
    // Under the caller's RLIMIT_FSIZE a shared-cache write must fail with EFBIG (a cache
    // miss), not kill the server with SIGXFSZ and fail every later access of the container.
    // Blocked before any thread starts, so all of them inherit it.
    let mut xfsz = nix::sys::signal::SigSet::empty();
    xfsz.add(nix::sys::signal::Signal::SIGXFSZ);
    let _ = xfsz.thread_block();
    let argv: Vec<String> = std::env::args().collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apptainer-squashfuse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(argv: &[String]) -> Result<(), String> {
    let args = args::parse(argv.get(1..).unwrap_or_default())?;
    let image = File::from(
        adopt(args.image_fd).map_err(|e| format!("image descriptor {}: {e}", args.image_fd))?,
    );
    let mut archive = match Archive::open(image, args.offset) {
        Ok(a) => a,
        Err(OpenError::Unsupported(c)) => {
            // The original descriptors are still open and inheritable: squashfuse_ll gets
            // exactly what we got.
            let err = Command::new(FALLBACK).args(&argv[1..]).exec();
            return Err(format!(
                "{c:?} images need {FALLBACK}, which cannot start: {err}"
            ));
        }
        Err(OpenError::Bad(e)) => return Err(e.to_string()),
    };
    // Optional: without a usable cache directory the server works as before.
    archive.shared = archive
        .key()
        .and_then(|k| shared_cache::SharedCache::open(&k, archive.sb.block_size));
    let fuse = adopt(args.fuse_fd).map_err(|e| format!("FUSE descriptor {}: {e}", args.fuse_fd))?;
    for fd in [args.image_fd, args.fuse_fd] {
        let _ = nix::unistd::close(fd);
    }
    let mut config = fuser::Config::default();
    config.n_threads = Some(1);
    // The kernel already enforces who may use the mount (allow_other or not, and
    // default_permissions): fuser's own owner check would wrongly refuse container users.
    let session = match fuser::Session::from_fd(
        fs::SquashFs::new(archive),
        fuse,
        fuser::SessionACL::All,
        config,
    ) {
        Ok(s) => s,
        // The mount went away before the kernel's first request: the starter gave up on
        // this container (and said why), so there is nothing to serve and nothing to add.
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return Ok(()),
        Err(e) => return Err(format!("FUSE handshake failed: {e}")),
    };
    session
        .run()
        .map_err(|e| format!("FUSE session failed: {e}"))
}

/// An owned, close-on-exec duplicate of inherited descriptor `raw`, made without unsafe
/// code: `raw` is duplicated onto stdin, which std can borrow safely, cloned from there, and
/// stdin is put back as it was. Runs before any thread exists.
fn adopt(raw: i32) -> std::io::Result<OwnedFd> {
    let saved = std::io::stdin().as_fd().try_clone_to_owned().ok();
    nix::unistd::dup2(raw, 0)?;
    let owned = std::io::stdin().as_fd().try_clone_to_owned();
    match &saved {
        Some(s) => {
            nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(s), 0)?;
        }
        None => {
            let _ = nix::unistd::close(0);
        }
    }
    owned
}
