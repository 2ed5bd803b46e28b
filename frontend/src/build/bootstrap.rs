//! Bootstrap agents: the base root filesystem of a stage, put at `ctx.rootfs` (which does
//! not exist yet). OCI agents reuse the pull pipeline (cache, verification, conversion to a
//! sandbox with the image's `/.singularity.d`); `localimage` unpacks a SIF or copies a
//! sandbox; `scratch` starts empty; `debootstrap` runs Debian's debootstrap (root only).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::idmap::SubIdMap;
use super::StageContext;
use crate::deffile::Agent;
use crate::sources::local::{self, LocalKind};
use crate::sources::Source;

pub fn run(ctx: &StageContext<'_>) -> Result<()> {
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
            match ctx.opts.subids.as_ref() {
                // Through the (cached) SIF unpacked inside the fakeroot mapping, so files
                // the image gives to other users keep their owners, as under the
                // reference's fakeroot build.
                Some(map) => {
                    let sif = ctx.work.join(format!("base-stage-{}.sif", ctx.index));
                    crate::pull::pull_to_file(&source, &sif, true, &pull)?;
                    let result = unsquash_mapped(&sif, ctx.rootfs, map);
                    let _ = fs::remove_file(&sif);
                    result?;
                }
                None => crate::pull::pull_to_sandbox(&source, ctx.rootfs, false, &pull)?,
            }
            // The conversion records a definition naming the image; this build records
            // its own, and an image pulled as a base has no history of its own.
            let def = ctx.rootfs.join(".singularity.d/Singularity");
            if fs::symlink_metadata(&def).is_ok() {
                fs::remove_file(&def).context("removing the base image's definition")?;
            }
            Ok(())
        }
        Agent::Localimage => localimage(Path::new(from), ctx.rootfs, ctx.opts.subids.as_ref()),
        Agent::Scratch => {
            fs::create_dir(ctx.rootfs).with_context(|| format!("creating {}", ctx.rootfs.display()))
        }
        Agent::Oras => oras(ctx, from),
        Agent::Debootstrap => debootstrap(ctx),
        other => bail!(
            "bootstrap agent {:?} is not supported by this build",
            other.name()
        ),
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

fn localimage(from: &Path, rootfs: &Path, subids: Option<&SubIdMap>) -> Result<()> {
    match (local::classify(from), subids) {
        (Some(LocalKind::Sif), None) => local::sif_to_sandbox(from, rootfs),
        (Some(LocalKind::Sif), Some(map)) => unsquash_mapped(from, rootfs, map),
        (Some(LocalKind::Sandbox), _) => copy_sandbox(from, rootfs, subids),
        (None, _) if from.exists() => {
            bail!("{from:?} is neither a SIF image nor a sandbox directory")
        }
        (None, _) => bail!("{from:?}: no such image"),
    }
}

/// `Bootstrap: oras`: the SIF artifact is pulled into the build's temporary directory,
/// then used as a `localimage`.
fn oras(ctx: &StageContext<'_>, from: &str) -> Result<()> {
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
    let mut cmd = match subids {
        Some(map) => map.command("cp", &args),
        None => {
            let mut c = Command::new("cp");
            c.args(args);
            c
        }
    };
    let out = cmd.output().context("running cp")?;
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

/// Debian's debootstrap with the stage's `OSVersion`, `MirrorURL` and `Include`.
fn debootstrap(ctx: &StageContext<'_>) -> Result<()> {
    let header = &ctx.stage.header;
    if !nix::unistd::geteuid().is_root() {
        bail!("the debootstrap agent needs root (debootstrap creates device nodes and sets ownership)");
    }
    let Some(program) = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        bail!("debootstrap is not installed (Debian package debootstrap)");
    };
    let suite = header
        .get("osversion")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(suite) = suite else {
        bail!("the debootstrap agent needs an \"OSVersion:\" header");
    };
    let mirror = header
        .get("mirrorurl")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(debian_mirror)
        .context("the debootstrap agent needs a \"MirrorURL:\" header (no Debian mirror configured on this machine)")?;
    let mut cmd = Command::new(program);
    cmd.arg("--variant=minbase");
    if let Some(inc) = header
        .get("include")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let list: Vec<&str> = inc.split([',', ' ']).filter(|s| !s.is_empty()).collect();
        cmd.arg(format!("--include={}", list.join(",")));
    }
    cmd.arg(suite).arg(ctx.rootfs).arg(&mirror);
    crate::info!("Running debootstrap {suite} from {mirror}");
    let status = cmd.status().context("running debootstrap")?;
    if !status.success() {
        bail!("debootstrap failed ({status})");
    }
    Ok(())
}

/// The host's Debian mirror (from its apt sources), for a def file without `MirrorURL`.
fn debian_mirror() -> Option<String> {
    let mut texts: Vec<String> = fs::read_to_string("/etc/apt/sources.list")
        .into_iter()
        .collect();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("deb ").or_else(|| l.strip_prefix("URIs:"))
        })
        .flat_map(str::split_whitespace)
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map(str::to_string)
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
