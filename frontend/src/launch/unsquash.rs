//! Running a SIF or squashfs image from a temporary sandbox, as the reference's launcher
//! does: with `--unsquash`, or in user-namespace mode when FUSE is unavailable (with a
//! warning). The image is extracted here, by `unsquashfs` running as the user outside any
//! namespace, into `rootfs-XXXXXX/root` under `$APPTAINER_TMPDIR` (else `$TMPDIR`, else
//! /tmp), the place users point at a large scratch disk. An interrupted or failed extraction
//! leaves nothing; a finished one is removed once the container has exited
//! (`cache::remove_after_exit`, started by whoever runs the starter).

use super::image::{self, ResolvedImage};
use crate::cache::{self, interrupt};
use anyhow::{bail, Context, Result};
use starter::plan::ImageKind;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// An extracted image. Until it is handed over (`remove_after_exit`), a signal or a drop
/// (an error later in the start) removes the directory.
pub struct Extracted {
    pub sandbox: ResolvedImage,
    dir: PathBuf,
    handed_over: bool,
    _registered: interrupt::Registered,
    watch: Option<interrupt::Watch>,
}

impl Extracted {
    /// Stops catching signals, before the Plan is put at fd 3 for a starter started as a
    /// child (the catcher's socket pair may sit there). Until the hand-over, a signal then
    /// ends the process as usual and leaves the directory: a window of one spawn.
    pub fn stop_catching_signals(&mut self) {
        self.watch = None;
    }

    /// Leaves the directory to a watcher that removes it once `pid` (the process that is,
    /// or runs, the starter) has exited.
    pub fn remove_after_exit(mut self, pid: u32) -> Result<()> {
        cache::remove_after_exit(&self.dir, pid)?;
        self.handed_over = true;
        Ok(())
    }
}

impl Drop for Extracted {
    fn drop(&mut self) {
        if !self.handed_over {
            interrupt::remove_path(&self.dir);
        }
    }
}

/// Whether this start runs from an extracted copy of `img`: asked for, or a SIF or squashfs
/// image in user-namespace mode (`userns`) where the caller cannot open /dev/fuse, which
/// the starter's FUSE mount needs.
pub fn wanted(img: &ResolvedImage, unsquash: bool, userns: bool) -> bool {
    if img.kind == ImageKind::Sandbox {
        return false;
    }
    let no_fuse = userns
        && !unsquash
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_err();
    if no_fuse {
        crate::warning!(
            "FUSE is unavailable: extracting {:?} to a temporary sandbox",
            img.path.display().to_string()
        );
    }
    unsquash || no_fuse
}

/// Extracts `img`'s root filesystem.
pub fn extract(img: &ResolvedImage) -> Result<Extracted> {
    let Some(offset) = image::squashfs_offset(img) else {
        bail!(
            "{}: no squashfs root filesystem to extract",
            img.path.display()
        );
    };
    let watch = interrupt::Watch::install()?;
    let base = cache::temp_base();
    let (dir, registered) = interrupt::temp(|| {
        let dir = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(&base)?;
        Ok(dir.keep())
    })
    .with_context(|| format!("cannot create a temporary directory in {}", base.display()))?;
    let root = dir.join("root");
    let mut cmd = Command::new("unsquashfs");
    // No xattrs (a user cannot set most of them); what a user cannot create (device nodes)
    // is a warning, not a failure (-ig), as is anything else unsquashfs can skip (-no-exit).
    cmd.args(["-q", "-n", "-no-xattrs", "-ig", "-no-exit", "-o"])
        .arg(offset.to_string())
        .arg("-d")
        .arg(&root)
        .arg(&img.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (child, _helper) = interrupt::spawn(&mut cmd).context("cannot run unsquashfs")?;
    let out = child.wait_with_output().context("waiting for unsquashfs")?;
    if !out.status.success() || !root.is_dir() {
        interrupt::remove_path(&dir);
        let why = String::from_utf8_lossy(&out.stderr);
        bail!(
            "extracting {} failed: {}",
            img.path.display(),
            why.lines().last().unwrap_or("unsquashfs failed")
        );
    }
    Ok(Extracted {
        sandbox: ResolvedImage {
            path: root,
            kind: ImageKind::Sandbox,
        },
        dir,
        handed_over: false,
        _registered: registered,
        watch: Some(watch),
    })
}
