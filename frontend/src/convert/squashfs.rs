//! Packing the merged tree into a gzip squashfs by streaming it, as one tar, into
//! `tar2sqfs` (squashfs-tools-ng): nothing is extracted to disk, the data blocks are
//! compressed on every core while the layers are still being read, and ownership,
//! modes, xattrs and hardlinks go straight from the layers into the image.
//!
//! When `tar2sqfs` is missing, the tree is extracted into a temporary sandbox and
//! packed with `mksquashfs`, as the reference does (slower, and files are then owned by
//! the caller when not root).

use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use anyhow::{bail, Context, Result};

use super::emit::emit;
use super::scan::OpenLayer;
use super::tarsink::TarSink;
use super::tree::Tree;

/// Big writes keep the pipe to tar2sqfs full with few syscalls.
const PIPE_BUFFER: usize = 1 << 20;
/// The compression level handed to tar2sqfs (see `write_with_tar2sqfs`).
const GZIP_LEVEL: &str = "level=4";
/// Keep at most this much of a tool's stderr for the error message.
const STDERR_KEPT: u64 = 64 * 1024;

/// Finds a program in `PATH` (plus the system directories Debian uses).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Number of compressor threads: `procs`, or every core when 0.
pub fn jobs(procs: usize) -> usize {
    if procs > 0 {
        procs
    } else {
        thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Writes `tree` as a gzip squashfs at `out` with tar2sqfs.
pub fn write_with_tar2sqfs(
    tar2sqfs: &Path,
    tree: &Tree,
    open: &OpenLayer<'_>,
    layers: usize,
    out: &Path,
    procs: usize,
) -> Result<()> {
    let mut cmd = Command::new(tar2sqfs);
    // gzip level 4 instead of mksquashfs's 9: zlib's cheapest "lazy matching" level. On
    // the bench's Debian minbase image (3 layers, 6.7k files, 115 MiB) the whole pull
    // takes 2.5 s of CPU, against 4.4 s at level 6 and 13.6 s at level 9, for an image
    // 2.6 % larger than at level 9 (48.8 MB against 47.6 MB). Levels 1-3 save at most
    // 0.5 s more but grow the image 5-9 %. Every level makes a standard gzip squashfs that
    // the kernel and squashfuse read alike.
    cmd.args(["--quiet", "--no-skip", "--force", "--compressor", "gzip"])
        .args(["--comp-extra", GZIP_LEVEL])
        .arg("--num-jobs")
        .arg(jobs(procs).to_string());
    // The image's own time is the build time, as mksquashfs sets it, unless the user
    // asks for a reproducible build (tar2sqfs then reads SOURCE_DATE_EPOCH itself).
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        cmd.arg("--defaults").arg(format!("mtime={now}"));
    }
    cmd.arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut child, _registered) = crate::cache::interrupt::spawn(&mut cmd)
        .with_context(|| format!("starting {}", tar2sqfs.display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.take(STDERR_KEPT).read_to_string(&mut s);
        s
    });
    let stdin = child.stdin.take().expect("piped stdin");
    let mut sink = TarSink::new(BufWriter::with_capacity(PIPE_BUFFER, stdin));
    let streamed = emit(tree, open, layers, &mut sink);
    // Closing stdin tells tar2sqfs the archive is complete (or lets it fail).
    drop(sink);
    let status = child.wait().context("waiting for tar2sqfs")?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        let detail = stderr.lines().last().unwrap_or("").trim().to_string();
        match streamed {
            Err(e) => return Err(e.context(format!("tar2sqfs failed: {detail}"))),
            Ok(()) => bail!("tar2sqfs failed ({status}): {detail}"),
        }
    }
    streamed?;
    if !stderr.trim().is_empty() {
        crate::debug!("tar2sqfs: {}", stderr.trim());
    }
    Ok(())
}

/// Packs an extracted root directory with mksquashfs.
pub fn write_with_mksquashfs(
    mksquashfs: &Path,
    root: &Path,
    out: &Path,
    procs: usize,
) -> Result<()> {
    let output = Command::new(mksquashfs)
        .arg(root)
        .arg(out)
        .args(["-noappend", "-no-progress", "-comp", "gzip", "-processors"])
        .arg(jobs(procs).to_string())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", mksquashfs.display()))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!(
            "mksquashfs failed ({}): {}",
            output.status,
            err.lines().last().unwrap_or("").trim()
        );
    }
    Ok(())
}
