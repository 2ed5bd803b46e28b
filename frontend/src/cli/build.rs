//! `apptainer build [options] <IMAGE PATH> <BUILD SPEC>`. This module handles the image
//! sources (docker://, docker-archive:, docker-daemon:, oci:, oci-archive:); a build spec
//! that is a local path (a definition file, SIF or sandbox) goes to `build_from_path`.

use super::GlobalOpts;
use crate::info;
use crate::pull::{self, PullOptions};
use crate::sources::local::{self, LocalKind};
use crate::sources::Source;
use anyhow::{bail, Context, Result};
use clap::ArgAction;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// build image as sandbox format (chroot directory structure)
    #[arg(short = 's', long, env = "APPTAINER_SANDBOX", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub sandbox: bool,
    /// overwrite an image file if it exists
    #[arg(short = 'F', long, env = "APPTAINER_FORCE", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub force: bool,
    /// architecture for remote build
    #[arg(long, env = "APPTAINER_BUILD_ARCH")]
    pub arch: Option<String>,
    /// architecture variant
    #[arg(long = "arch-variant", env = "APPTAINER_BUILD_ARCH_VARIANT")]
    pub arch_variant: Option<String>,
    /// platform to pull, as os/arch[/variant] (e.g. linux/arm64/v8)
    #[arg(long, env = "APPTAINER_PLATFORM", conflicts_with_all = ["arch", "arch_variant"])]
    pub platform: Option<String>,
    /// do not use cache or create cache
    #[arg(long = "disable-cache", env = "APPTAINER_DISABLE_CACHE", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub disable_cache: bool,
    /// use http instead of https for docker:// oras:// and library://<hostname>/... URIs
    #[arg(long = "no-https", alias = "nohttps", env = "APPTAINER_NOHTTPS", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub no_https: bool,
    /// specify a custom Docker daemon host for docker-daemon: URIs
    #[arg(long = "docker-host", env = "APPTAINER_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// ensure owner has rwX permissions on all container content for oci/docker sources
    #[arg(long = "fix-perms", env = "APPTAINER_FIXPERMS", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub fix_perms: bool,
    #[command(flatten)]
    pub def: crate::build::DefFlags,
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,
    /// path of the image (SIF file or sandbox directory) to build
    pub image: PathBuf,
    /// what to build from: an image URI or a definition file
    pub spec: String,
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    let sandbox = args.sandbox;
    match Source::parse(&args.spec)? {
        Some(source) => build_from_source(&args, &source, sandbox),
        None => build_from_path(&args, Path::new(&args.spec), sandbox),
    }
}

fn build_from_source(args: &Args, source: &Source, sandbox: bool) -> Result<()> {
    let opts = pull_options(args)?;
    if sandbox {
        pull::pull_to_sandbox(source, &args.image, args.force, &opts)?;
    } else {
        pull::pull_to_file(source, &args.image, args.force, &opts)?;
    }
    info!("Build complete: {}", args.image.display());
    Ok(())
}

/// Branch point for builds from a local path: an existing SIF or sandbox is converted
/// here; anything else is a definition file, for the definition-file builder.
fn build_from_path(args: &Args, spec: &Path, sandbox: bool) -> Result<()> {
    if !spec.exists() {
        bail!("{:?}: no such file, and not an image URI", spec);
    }
    match local::classify(spec) {
        Some(kind) => build_from_local(args, spec, kind, sandbox),
        None => build_from_deffile(args, spec, sandbox),
    }
}

fn build_from_local(args: &Args, spec: &Path, kind: LocalKind, sandbox: bool) -> Result<()> {
    let dest = &args.image;
    if dest.canonicalize().ok() == spec.canonicalize().ok() && dest.exists() {
        bail!("{:?}: the output is the build source", dest);
    }
    if kind == LocalKind::Sandbox && sandbox {
        bail!(
            "{:?} is already a sandbox: copy the directory instead",
            spec
        );
    }
    pull::check_output(dest, args.force)?;
    info!("Starting build...");
    let replace = |dest: &Path| -> Result<()> {
        // Only reached with --force: check_output refused an existing output otherwise.
        match std::fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(dest),
            Ok(_) => std::fs::remove_file(dest),
            Err(_) => return Ok(()),
        }
        .with_context(|| format!("removing {}", dest.display()))
    };
    match (kind, sandbox) {
        (LocalKind::Sif, true) => {
            replace(dest)?;
            local::sif_to_sandbox(spec, dest)?
        }
        (LocalKind::Sandbox, false) => {
            info!("Creating SIF file...");
            if dest.is_dir() {
                replace(dest)?;
            }
            local::sandbox_to_sif(spec, dest)?
        }
        (LocalKind::Sif, false) => pull::copy_atomic(spec, dest, args.force)?,
        (LocalKind::Sandbox, true) => unreachable!("refused above"),
    }
    info!("Build complete: {}", dest.display());
    Ok(())
}

/// A definition file: the definition-file builder (`crate::build`).
fn build_from_deffile(args: &Args, spec: &Path, sandbox: bool) -> Result<()> {
    let pull_opts = pull_options(args)?;
    let opts = crate::build::BuildOptions::from_flags(
        &args.def,
        sandbox,
        args.force,
        args.fix_perms,
        pull_opts,
    );
    crate::build::build_from_deffile(spec, &args.image, &opts)
}

/// How base images and image sources are fetched: platform, cache, transport and the
/// credentials that `--docker-login`, `--authfile`, the environment or stored logins give.
fn pull_options(args: &Args) -> Result<PullOptions> {
    let (arch, arch_variant) = match &args.platform {
        Some(p) => {
            let (a, v) = pull::split_platform(p)?;
            (Some(a), v)
        }
        None => (args.arch.clone(), args.arch_variant.clone()),
    };
    Ok(PullOptions {
        arch,
        arch_variant,
        disable_cache: args.disable_cache,
        no_https: args.no_https || pull::no_https_from_env(),
        docker_host: args.docker_host.clone().or_else(pull::docker_host_from_env),
        credentials: args.auth.store()?,
        fix_perms: args.fix_perms,
    })
}
