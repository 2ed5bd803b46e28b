//! The output of a build: the last stage's root as a SIF (gzip squashfs made with
//! mksquashfs on every core, the definition file, `inspect-metadata.json` and the base
//! image's `oci-config.json` beside it, as the reference stores them) or as a sandbox
//! directory. Either appears complete or not at
//! all.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::idmap::SubIdMap;
use super::{inspect, remove_root, BuildOptions};
use crate::deffile::DefFile;

pub fn to_sif(
    root: &Path,
    out: &Path,
    def: &DefFile,
    opts: &BuildOptions,
    work: &Path,
    oci_config: Option<&[u8]>,
) -> Result<()> {
    use sif::write::{
        create_container, CreateOptions, DataSource, DescriptorInput, RUN_SINGULARITY,
    };
    crate::info!("Creating SIF file...");
    let squashfs = work.join("rootfs.sqfs");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args: Vec<std::ffi::OsString> = vec![root.into(), squashfs.clone().into()];
    for a in [
        "-noappend",
        "-comp",
        "gzip",
        "-no-progress",
        "-quiet",
        "-processors",
    ] {
        args.push(a.into());
    }
    args.push(jobs.to_string().into());
    const WHAT: &str = "build squashfs packing";
    // Root-mapped fakeroot: every file the build saw as root's is the caller's on the
    // host. The image records what the build saw.
    let all_root = opts.fakeroot && !nix::unistd::geteuid().is_root();
    let output = match &opts.subids {
        // Inside the fakeroot mapping every file reads as the build saw it (root, or a
        // subordinate id), and files only those ids may read are readable.
        Some(map) => {
            crate::landlock::not_applied(WHAT, super::idmap::UNCONFINED);
            map.command("mksquashfs", &args).output()
        }
        // mksquashfs writes only the squashfs in the build's temporary directory.
        None => crate::landlock::confined_step(WHAT, &[work], || {
            let mut c = Command::new("mksquashfs");
            c.args(&args);
            if all_root {
                c.arg("-all-root");
            }
            c.output()
        }),
    };
    let output = output.context("running mksquashfs (is squashfs-tools installed?)")?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!(
            "mksquashfs failed ({}): {}",
            output.status,
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        );
    }
    let part =
        fs::File::open(&squashfs).with_context(|| format!("opening {}", squashfs.display()))?;
    let arch = sif::Arch::host().unwrap_or(sif::Arch::Amd64);
    // As the reference orders them: definition, JSON objects by name, then the root.
    let mut inputs = vec![
        DescriptorInput::new(
            sif::DataType::Deffile,
            DataSource::Bytes(def.templated_text().into_bytes()),
        ),
        DescriptorInput::new(
            sif::DataType::GenericJson,
            DataSource::Bytes(inspect::sif_object(root)),
        )
        .name("inspect-metadata.json"),
    ];
    if let Some(config) = oci_config {
        inputs.push(
            DescriptorInput::new(
                sif::DataType::GenericJson,
                DataSource::Bytes(config.to_vec()),
            )
            .name(super::bootstrap::OCI_CONFIG),
        );
    }
    inputs.push(
        DescriptorInput::new(sif::DataType::Partition, DataSource::File(part)).partition(
            sif::FsType::Squash,
            sif::PartType::PrimSys,
            arch,
        ),
    );
    if out.is_dir() && !out.is_symlink() {
        // Only reached with --force (the output check refused otherwise).
        remove_root(out, opts.subids.as_ref());
    }
    let create = CreateOptions {
        launch_script: RUN_SINGULARITY.to_string(),
        ..CreateOptions::default()
    };
    create_container(out, create, inputs).with_context(|| format!("writing {}", out.display()))
}

/// Moves the root into place; across filesystems it is copied beside `out` first.
/// With `subids` the copy and the removals run inside the fakeroot mapping, since the
/// tree may hold files of the caller's subordinate ids.
pub fn to_sandbox(root: &Path, out: &Path, force: bool, subids: Option<&SubIdMap>) -> Result<()> {
    crate::info!("Creating sandbox directory...");
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staged = match fs::rename(root, parent.join(temp_name(out))) {
        Ok(()) => parent.join(temp_name(out)),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let dest = parent.join(temp_name(out));
            let args = [
                std::ffi::OsStr::new("-a"),
                root.as_os_str(),
                dest.as_os_str(),
            ];
            let mut cmd = match subids {
                Some(map) => map.command("cp", &args),
                None => {
                    let mut c = Command::new("cp");
                    c.args(args);
                    c
                }
            };
            let status = cmd.status().context("running cp")?;
            if !status.success() {
                remove_root(&dest, subids);
                bail!("copying the sandbox to {} failed", parent.display());
            }
            dest
        }
        Err(e) => {
            return Err(e).with_context(|| format!("moving the sandbox into {}", parent.display()))
        }
    };
    if force && fs::symlink_metadata(out).is_ok() {
        if out.is_dir() && !out.is_symlink() {
            remove_root(out, subids);
        } else {
            let _ = fs::remove_file(out);
        }
    }
    if let Err(e) = fs::rename(&staged, out) {
        remove_root(&staged, subids);
        return Err(e).with_context(|| format!("moving the sandbox to {}", out.display()));
    }
    Ok(())
}

fn temp_name(out: &Path) -> String {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sandbox".into());
    format!(".{name}.build-{}", std::process::id())
}
