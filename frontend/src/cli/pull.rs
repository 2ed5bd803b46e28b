//! `apptainer pull [options] [output file] <URI>`: an OCI image (docker://, docker-archive:,
//! docker-daemon:, oci:, oci-archive:) to a SIF file (default `<name>_<tag>.sif`) or,
//! with `--sandbox`, a directory.

use super::GlobalOpts;
use crate::pull::{self, PullOptions};
use crate::sources::Source;
use anyhow::{bail, Result};
use clap::ArgAction;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// architecture to pull from library or OCI registry
    #[arg(long, env = "APPTAINER_PULL_ARCH")]
    pub arch: Option<String>,
    /// architecture variant to pull from library or OCI registry
    #[arg(long = "arch-variant", env = "APPTAINER_PULL_ARCH_VARIANT")]
    pub arch_variant: Option<String>,
    /// platform to pull, as os/arch[/variant] (e.g. linux/arm64/v8)
    #[arg(long, env = "APPTAINER_PLATFORM", conflicts_with_all = ["arch", "arch_variant"])]
    pub platform: Option<String>,
    /// download images to the specific directory
    #[arg(long, env = "APPTAINER_PULLDIR")]
    pub dir: Option<PathBuf>,
    /// do not use or create cached images/blobs
    #[arg(long = "disable-cache", env = "APPTAINER_DISABLE_CACHE", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub disable_cache: bool,
    /// overwrite an image file if it exists
    #[arg(short = 'F', long, env = "APPTAINER_FORCE", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub force: bool,
    /// use http instead of https for docker:// oras:// and library://<hostname>/... URIs
    #[arg(long = "no-https", alias = "nohttps", env = "APPTAINER_NOHTTPS", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub no_https: bool,
    /// pull an image and convert it to a sandbox directory
    #[arg(long, env = "APPTAINER_SANDBOX", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub sandbox: bool,
    /// specify a custom Docker daemon host for docker-daemon: URIs
    #[arg(long = "docker-host", env = "APPTAINER_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// do not require a signed container image (OCI images carry no SIF signature)
    #[arg(short = 'U', long = "allow-unsigned", env = "APPTAINER_ALLOW_UNSIGNED", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub allow_unsigned: bool,
    /// the library to pull from (library:// sources only)
    #[arg(long, env = "APPTAINER_LIBRARY")]
    pub library: Option<String>,
    /// specify a custom image name
    #[arg(long, hide = true)]
    pub name: Option<PathBuf>,
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,
    /// [output file] <URI>
    #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
    pub args: Vec<String>,
}

impl Args {
    /// The options for the pull pipeline these flags select.
    pub fn pull_options(&self) -> Result<PullOptions> {
        let (arch, arch_variant) = match &self.platform {
            Some(p) => {
                let (a, v) = pull::split_platform(p)?;
                (Some(a), v)
            }
            None => (self.arch.clone(), self.arch_variant.clone()),
        };
        Ok(PullOptions {
            arch,
            arch_variant,
            disable_cache: self.disable_cache,
            no_https: self.no_https || pull::no_https_from_env(),
            docker_host: self.docker_host.clone().or_else(pull::docker_host_from_env),
            credentials: self.auth.store()?,
            fix_perms: false,
        })
    }
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    let (name, uri) = match args.args.as_slice() {
        [uri] => (None, uri.clone()),
        [name, uri] => (Some(PathBuf::from(name)), uri.clone()),
        _ => bail!("pull takes an optional output file and a URI"),
    };
    if uri.starts_with("oras://") {
        return pull_oras(&args, name, &uri);
    }
    let source = match Source::parse(&uri)? {
        Some(s) => s,
        // Apptainer reads a bare name as library://, which this build does not serve.
        None => bail!("{uri:?}: library:// images are not supported by this build yet; use docker://{uri} for Docker Hub"),
    };
    let name = name.or_else(|| args.name.clone()).unwrap_or_else(|| {
        let n = source.default_sif_name();
        PathBuf::from(if args.sandbox {
            n.trim_end_matches(".sif").to_string()
        } else {
            n
        })
    });
    // APPTAINER_PULLFOLDER is the older name of APPTAINER_PULLDIR.
    let dir = args.dir.clone().or_else(|| {
        std::env::var_os("APPTAINER_PULLFOLDER")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let dest = match &dir {
        Some(dir) => dir.join(name),
        None => name,
    };
    let opts = args.pull_options()?;
    if args.sandbox {
        pull::pull_to_sandbox(&source, &dest, args.force, &opts)
    } else {
        pull::pull_to_file(&source, &dest, args.force, &opts)
    }
}

/// `pull [dest] oras://host/repo:tag`: the SIF artifact, as is (see `crate::oras`).
fn pull_oras(args: &Args, name: Option<PathBuf>, uri: &str) -> Result<()> {
    if args.sandbox {
        bail!("{uri}: --sandbox is not supported for oras:// images");
    }
    let reference = crate::oras::parse_reference(uri)?;
    let name = name.or_else(|| args.name.clone()).unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}_{}.sif",
            reference.short_name(),
            reference.tag.as_deref().unwrap_or("latest")
        ))
    });
    let dest = match &args.dir {
        Some(dir) => dir.join(name),
        None => name,
    };
    let target = crate::oras::Target {
        credentials: args.auth.store()?.credentials_for(&reference.registry),
        reference,
        no_https: args.no_https || pull::no_https_from_env(),
    };
    crate::oras::pull(&target, &dest, args.force, args.disable_cache)
}
