//! Bootstrap agents: the base root filesystem of a stage, put at `ctx.rootfs` (which does
//! not exist yet). OCI agents reuse the pull pipeline (cache, verification, conversion to a
//! SIF with the image's `/.singularity.d`), then unpack that SIF; `localimage` unpacks a
//! SIF or copies a sandbox; `scratch` starts empty; `debootstrap` runs Debian's
//! debootstrap (see `debootstrap.rs`).
//!
//! An agent also hands back the base image's OCI config (`oci-config.json`) when it has
//! one, as the reference keeps it: from the image config of an OCI source, or from the
//! object of that name in a SIF used as `localimage` (or pulled with `oras`).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::idmap::SubIdMap;
use super::StageContext;
use crate::deffile::Agent;
use crate::sources::local::{self, LocalKind};
use crate::sources::Source;

/// Makes the stage's base root; returns the base image's OCI config when it has one.
pub fn run(ctx: &StageContext<'_>) -> Result<Option<Vec<u8>>> {
    let header = &ctx.stage.header;
    let from = header.from().unwrap_or("").trim();
    match header.agent {
        Agent::Docker
        | Agent::DockerArchive
        | Agent::DockerDaemon
        | Agent::Oci
        | Agent::OciArchive => {
            let uri = oci_uri(
                header.agent,
                from,
                header.get("registry"),
                header.get("namespace"),
            );
            let source = Source::parse(&uri)?
                .with_context(|| format!("{uri:?} is not an image reference"))?;
            let mut pull = ctx.opts.pull.clone();
            pull.fix_perms |= ctx.opts.fix_perms;
            // Through the (cached) SIF of the image, which also holds its OCI config.
            // Under fakeroot it is unpacked inside the mapping, so files the image gives
            // to other users keep their owners, as under the reference's fakeroot build.
            let sif = ctx.work.join(format!("base-stage-{}.sif", ctx.index));
            crate::pull::pull_to_file(&source, &sif, true, &pull)?;
            let result = read_oci_config(&sif).and_then(|config| {
                unpack_sif(&sif, ctx.rootfs, ctx.opts.subids.as_ref())?;
                Ok(config)
            });
            let _ = fs::remove_file(&sif);
            let config = result?;
            // The conversion records a definition naming the image; this build records
            // its own, and an image pulled as a base has no history of its own.
            let def = ctx.rootfs.join(".singularity.d/Singularity");
            if fs::symlink_metadata(&def).is_ok() {
                fs::remove_file(&def).context("removing the base image's definition")?;
            }
            Ok(config)
        }
        Agent::Localimage => localimage(Path::new(from), ctx.rootfs, ctx.opts.subids.as_ref()),
        Agent::Scratch => {
            fs::create_dir(ctx.rootfs)
                .with_context(|| format!("creating {}", ctx.rootfs.display()))?;
            Ok(None)
        }
        Agent::Oras => oras(ctx, from),
        Agent::Debootstrap => super::debootstrap::run(ctx).map(|()| None),
        other => bail!(
            "bootstrap agent {:?} is not supported by this build",
            other.name()
        ),
    }
}

/// The `oci-config.json` object of a SIF, if it has one.
fn read_oci_config(sif: &Path) -> Result<Option<Vec<u8>>> {
    let mut f = fs::File::open(sif).with_context(|| format!("opening {}", sif.display()))?;
    let image = sif::Image::load(&mut f).with_context(|| format!("reading {}", sif.display()))?;
    let Some(id) = image
        .descriptors()
        .find(|d| d.data_type == sif::DataType::GenericJson && d.name() == OCI_CONFIG)
        .map(|d| d.id)
    else {
        return Ok(None);
    };
    let data = image
        .read_object(&mut f, id)
        .with_context(|| format!("reading {OCI_CONFIG} of {}", sif.display()))?;
    Ok(Some(data))
}

/// The SIF object holding the base image's OCI config, as the reference names it.
pub const OCI_CONFIG: &str = "oci-config.json";

/// Landlock's name for unpacking or copying the base image.
const EXTRACTION: &str = "build bootstrap extraction";

fn unpack_sif(sif: &Path, rootfs: &Path, subids: Option<&SubIdMap>) -> Result<()> {
    match subids {
        Some(map) => {
            crate::landlock::not_applied(EXTRACTION, super::idmap::UNCONFINED);
            unsquash_mapped(sif, rootfs, map)
        }
        // unsquashfs fills a temporary directory beside `rootfs`, renamed to it.
        None => {
            let stage = rootfs.parent().unwrap_or(rootfs);
            crate::landlock::confined_step(EXTRACTION, &[stage], || {
                local::sif_to_sandbox(sif, rootfs)
            })
        }
    }
}

/// The image URI of an OCI agent's `From:`, with `Registry:` and `Namespace:` prefixed as
/// the reference does for `docker`.
fn oci_uri(agent: Agent, from: &str, registry: Option<&str>, namespace: Option<&str>) -> String {
    match agent {
        Agent::Docker => {
            let mut name = from
                .trim_start_matches("docker://")
                .trim_start_matches('/')
                .to_string();
            if let Some(ns) = namespace.map(str::trim).filter(|n| !n.is_empty()) {
                name = format!("{}/{name}", ns.trim_matches('/'));
            }
            if let Some(reg) = registry.map(str::trim).filter(|r| !r.is_empty()) {
                name = format!("{}/{name}", reg.trim_end_matches('/'));
            }
            format!("docker://{name}")
        }
        other => {
            let prefix = format!("{}:", other.name());
            if from.starts_with(&prefix) {
                from.to_string()
            } else {
                format!("{prefix}{from}")
            }
        }
    }
}

fn localimage(from: &Path, rootfs: &Path, subids: Option<&SubIdMap>) -> Result<Option<Vec<u8>>> {
    match local::classify(from) {
        Some(LocalKind::Sif) => {
            let config = read_oci_config(from)?;
            unpack_sif(from, rootfs, subids)?;
            Ok(config)
        }
        Some(LocalKind::Sandbox) => copy_sandbox(from, rootfs, subids).map(|()| None),
        None if from.exists() => {
            bail!("{from:?} is neither a SIF image nor a sandbox directory")
        }
        None => bail!("{from:?}: no such image"),
    }
}

/// `Bootstrap: oras`: the SIF artifact is pulled into the build's temporary directory,
/// then used as a `localimage`.
fn oras(ctx: &StageContext<'_>, from: &str) -> Result<Option<Vec<u8>>> {
    let reference = crate::oras::parse_reference(from)?;
    let sif = ctx.work.join(format!("oras-stage-{}.sif", ctx.index));
    let target = crate::oras::Target {
        credentials: ctx
            .opts
            .pull
            .credentials
            .credentials_for(&reference.registry),
        reference,
        no_https: ctx.opts.pull.no_https,
    };
    crate::oras::pull(&target, &sif, true, ctx.opts.pull.disable_cache)?;
    let result = localimage(&sif, ctx.rootfs, ctx.opts.subids.as_ref());
    let _ = fs::remove_file(&sif);
    result
}

/// A SIF unpacked inside the fakeroot mapping, so its files keep the owners they have in
/// the image (root = the caller, other ids = the caller's subordinate ids).
fn unsquash_mapped(sif: &Path, rootfs: &Path, map: &SubIdMap) -> Result<()> {
    let offset = super::inspect::sif_squashfs_offset(sif)?;
    let args: Vec<std::ffi::OsString> = vec![
        "-f".into(),
        "-n".into(),
        // Only real root may set security xattrs.
        "-no-xattrs".into(),
        "-d".into(),
        rootfs.into(),
        "-o".into(),
        offset.to_string().into(),
        sif.into(),
    ];
    let out = map
        .command("unsquashfs", &args)
        .output()
        .context("running unsquashfs")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "unpacking {}: {}",
            sif.display(),
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        );
    }
    Ok(())
}

/// `cp -a` keeps ownership (as root, or inside the fakeroot mapping), modes, links,
/// special files and xattrs.
fn copy_sandbox(from: &Path, rootfs: &Path, subids: Option<&SubIdMap>) -> Result<()> {
    fs::create_dir(rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    let mut src = from.as_os_str().to_owned();
    src.push("/.");
    let args = [
        std::ffi::OsStr::new("-a"),
        src.as_os_str(),
        rootfs.as_os_str(),
    ];
    let out = match subids {
        Some(map) => {
            crate::landlock::not_applied(EXTRACTION, super::idmap::UNCONFINED);
            map.command("cp", &args).output()
        }
        None => crate::landlock::confined_step(EXTRACTION, &[rootfs], || {
            Command::new("cp").args(args).output()
        }),
    };
    let out = out.context("running cp")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "copying sandbox {}: {}",
            from.display(),
            err.lines().next().unwrap_or("").trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_uri_takes_registry_and_namespace_prefixes() {
        assert_eq!(
            oci_uri(
                Agent::Docker,
                "busybox:latest",
                Some("127.0.0.1:5000"),
                Some("test")
            ),
            "docker://127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(
            oci_uri(Agent::Docker, "alpine", None, None),
            "docker://alpine"
        );
        assert_eq!(
            oci_uri(Agent::OciArchive, "/x/img.tar", None, None),
            "oci-archive:/x/img.tar"
        );
    }
}
