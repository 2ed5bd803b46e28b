//! Local images as build sources: a SIF unpacked to a sandbox directory
//! (`build --sandbox DIR IMAGE.sif`), a sandbox packed into a SIF (`build IMAGE.sif DIR`),
//! and a SIF copied (`build OUT.sif IN.sif`). Outputs are built beside their destination
//! under a temporary name and renamed, so a failure leaves nothing behind.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a local build source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    Sif,
    Sandbox,
}

/// Classifies `path`: a directory is a sandbox, a file with the SIF magic a SIF; anything
/// else (a definition file, say) is `None`.
pub fn classify(path: &Path) -> Option<LocalKind> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        return Some(LocalKind::Sandbox);
    }
    let mut f = std::fs::File::open(path).ok()?;
    sif::Image::load(&mut f).ok().map(|_| LocalKind::Sif)
}

/// Unpacks the SIF's primary squashfs partition into a new directory `dest`.
pub fn sif_to_sandbox(sif_path: &Path, dest: &Path) -> Result<()> {
    let offset = squashfs_offset(sif_path)?;
    let work = temp_beside(dest)?;
    let root = work.path().join("rootfs");
    let mut cmd = Command::new("unsquashfs");
    cmd.args(["-f", "-n", "-d"])
        .arg(&root)
        .arg("-o")
        .arg(offset.to_string());
    if !nix::unistd::geteuid().is_root() {
        // Only root may set ownership, device nodes or security xattrs.
        cmd.arg("-no-xattrs");
    }
    cmd.arg(sif_path);
    run_tool(&mut cmd, "unsquashfs")?;
    std::fs::rename(&root, dest)
        .with_context(|| format!("moving the sandbox to {}", dest.display()))
}

/// Packs the sandbox `dir` as a gzip squashfs into a new SIF at `dest`.
pub fn sandbox_to_sif(dir: &Path, dest: &Path) -> Result<()> {
    use sif::write::{
        create_container, CreateOptions, DataSource, DescriptorInput, RUN_SINGULARITY,
    };
    let work = temp_beside(dest)?;
    let squashfs = work.path().join("rootfs.sqfs");
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(dir)
        .arg(&squashfs)
        .args(["-noappend", "-comp", "gzip", "-no-progress", "-quiet"]);
    run_tool(&mut cmd, "mksquashfs")?;
    let mut inputs = Vec::new();
    // The definition the sandbox was built from travels with it, as in the reference.
    if let Ok(def) = std::fs::read(dir.join(".singularity.d/Singularity")) {
        inputs.push(DescriptorInput::new(
            sif::DataType::Deffile,
            DataSource::Bytes(def),
        ));
    }
    let part = std::fs::File::open(&squashfs)
        .with_context(|| format!("opening {}", squashfs.display()))?;
    let arch = sif::Arch::host().unwrap_or(sif::Arch::Amd64);
    inputs.push(
        DescriptorInput::new(sif::DataType::Partition, DataSource::File(part)).partition(
            sif::FsType::Squash,
            sif::PartType::PrimSys,
            arch,
        ),
    );
    let opts = CreateOptions {
        launch_script: RUN_SINGULARITY.to_string(),
        ..CreateOptions::default()
    };
    create_container(dest, opts, inputs).with_context(|| format!("writing {}", dest.display()))
}

fn squashfs_offset(sif_path: &Path) -> Result<u64> {
    let mut f =
        std::fs::File::open(sif_path).with_context(|| format!("opening {}", sif_path.display()))?;
    let part = sif::primary_partition(&mut f)
        .with_context(|| format!("{}: no primary partition", sif_path.display()))?;
    if part.fs_type != sif::FsType::Squash {
        bail!(
            "{}: the primary partition is not squashfs",
            sif_path.display()
        );
    }
    Ok(part.offset)
}

fn temp_beside(dest: &Path) -> Result<tempfile::TempDir> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".tmp-build-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write to output directory {:?}", parent))
}

fn run_tool(cmd: &mut Command, name: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {name} (is it installed?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        bail!("{name} failed ({}): {line}", out.status);
    }
    Ok(())
}
