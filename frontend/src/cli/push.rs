//! `apptainer push [options] IMAGE.sif oras://host/repo:tag`: uploads a SIF as an OCI
//! artifact (see `crate::oras`). library:// endpoints are not served by this build.

use super::GlobalOpts;
use crate::auth::AuthArgs;
use anyhow::{bail, Result};
use clap::ArgAction;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub auth: AuthArgs,
    /// use http instead of https for docker:// oras:// and library://<hostname>/... URIs
    #[arg(long = "no-https", alias = "nohttps", env = "APPTAINER_NOHTTPS", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub no_https: bool,
    /// allow pushing an unsigned image (SIF signatures are not checked by this build)
    #[arg(short = 'U', long = "allow-unsigned", env = "APPTAINER_ALLOW_UNSIGNED", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub allow_unsigned: bool,
    /// the SIF image to upload
    pub image: PathBuf,
    /// where to upload it (oras://host/repo:tag)
    pub uri: String,
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    let Some(rest) = args.uri.strip_prefix("oras://") else {
        match args.uri.split_once("://") {
            Some((t, _)) => bail!("{t}:// is not supported by push in this build; use oras://"),
            None => bail!("{:?}: push needs an oras:// URI", args.uri),
        }
    };
    let reference = crate::oras::parse_reference(rest)?;
    let credentials = args.auth.store()?.credentials_for(&reference.registry);
    let target = crate::oras::Target {
        reference,
        credentials,
        no_https: args.no_https || crate::pull::no_https_from_env(),
    };
    let digest = crate::oras::push(&args.image, &target)?;
    crate::info!("Upload complete");
    crate::verbose!("manifest digest {digest}");
    Ok(())
}
