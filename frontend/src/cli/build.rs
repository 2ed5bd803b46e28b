//! `apptainer build [options] <IMAGE PATH> <BUILD SPEC>`. This module handles the image
//! sources (docker://, docker-archive:, docker-daemon:, oci:, oci-archive:); a build spec
//! that is a local path (a definition file, SIF or sandbox) goes to `build_from_path`.

use super::GlobalOpts;
use crate::info;
use crate::pull::{self, PullOptions};
use crate::registry::NoCredentials;
use crate::sources::Source;
use anyhow::Result;
use clap::ArgAction;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let opts = PullOptions {
        arch: args.arch.clone(),
        arch_variant: args.arch_variant.clone(),
        disable_cache: args.disable_cache,
        no_https: args.no_https || pull::no_https_from_env(),
        docker_host: args.docker_host.clone().or_else(pull::docker_host_from_env),
        credentials: Arc::new(NoCredentials),
        fix_perms: args.fix_perms,
    };
    if sandbox {
        pull::pull_to_sandbox(source, &args.image, args.force, &opts)?;
    } else {
        pull::pull_to_file(source, &args.image, args.force, &opts)?;
    }
    info!("Build complete: {}", args.image.display());
    Ok(())
}

/// Branch point for builds from a local path: a definition file (or an existing SIF or
/// sandbox). The definition-file builder plugs in here.
fn build_from_path(_args: &Args, spec: &Path, _sandbox: bool) -> Result<()> {
    if !spec.exists() {
        anyhow::bail!("{:?}: no such file, and not an image URI", spec);
    }
    super::unimplemented("build from a definition file or local image")
}
