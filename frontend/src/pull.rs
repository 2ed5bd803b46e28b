//! Getting an OCI image as a SIF or sandbox: resolve the source, reuse the converted SIF
//! from the cache when the image is unchanged, otherwise fetch the blobs and convert once
//! (under the entry's lock, so concurrent pulls of one image convert it once), and copy
//! results out atomically.
//!
//! `sif_for_uri` is what `run|exec|shell|inspect docker://...` call.

use crate::cache::{interrupt, Cache, Digest};
use crate::oci::FetchedImage;
use crate::registry::{ClientOptions, CredentialStore, Platform};
use crate::sources::{self, FetchOptions, Source};
use crate::{env, info};
use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to get an image; the CLI fills this from flags, `from_env` from the environment.
#[derive(Clone)]
pub struct PullOptions {
    /// `--arch` (e.g. `arm64`, `arm32v7`); `None` means the host.
    pub arch: Option<String>,
    /// `--arch-variant` (e.g. `v7`).
    pub arch_variant: Option<String>,
    /// `--disable-cache`: work in a temporary cache.
    pub disable_cache: bool,
    /// `--no-https`: plain HTTP to registries.
    pub no_https: bool,
    /// `--docker-host` / `DOCKER_HOST` for `docker-daemon:` (a `unix://` socket).
    pub docker_host: Option<String>,
    /// Registry credentials by host; anonymous unless the auth code supplies a store.
    pub credentials: Arc<dyn CredentialStore>,
    /// `--fix-perms` (build): owner rwX everywhere. Such a SIF is never cached.
    pub fix_perms: bool,
}

impl PullOptions {
    /// Options from `APPTAINER_NOHTTPS`/`APPTAINER_NO_HTTPS`, `APPTAINER_DISABLE_CACHE`,
    /// `APPTAINER_DOCKER_HOST`/`DOCKER_HOST`, with host platform and the credentials of
    /// the environment and the credential files.
    #[allow(dead_code)] // for the action commands (run/exec/shell/inspect docker://)
    pub fn from_env() -> PullOptions {
        PullOptions {
            arch: None,
            arch_variant: None,
            disable_cache: env::flag("APPTAINER_DISABLE_CACHE"),
            no_https: no_https_from_env(),
            docker_host: docker_host_from_env(),
            credentials: crate::auth::environment_store(),
            fix_perms: false,
        }
    }

    fn fetch_options(&self, source: &Source) -> Result<FetchOptions> {
        Ok(FetchOptions {
            platform: self.platform_for(source)?,
            client: ClientOptions {
                no_https: self.no_https,
                credentials: self.credentials.clone(),
            },
            docker_host: self.docker_host.clone(),
        })
    }
}

impl PullOptions {
    /// `--arch`/`--arch-variant`, except that Docker Hub's per-architecture namespaces
    /// (`docker://arm64v8/alpine`) name the architecture themselves, and win (as in Apptainer).
    fn platform_for(&self, source: &Source) -> Result<Platform> {
        let requested = Platform::select(self.arch.as_deref(), self.arch_variant.as_deref())?;
        let Some(named) = hub_arch_namespace(source) else {
            return Ok(requested);
        };
        let platform = Platform::select(Some(named), None)?;
        if self.arch.is_some() && platform != requested {
            crate::warning!(
                "using architecture {platform} named by the image's namespace {named:?}, not {requested}"
            );
        }
        Ok(platform)
    }
}

/// The architecture a Docker Hub namespace such as `arm64v8/` or `ppc64le/` stands for.
fn hub_arch_namespace(source: &Source) -> Option<&'static str> {
    const NAMESPACES: &[&str] = &[
        "amd64", "arm32v5", "arm32v6", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x", "riscv64",
    ];
    let Source::Docker(r) = source else {
        return None;
    };
    if r.registry != crate::registry::reference::DOCKER_HUB {
        return None;
    }
    let first = r.repository.split('/').next()?;
    NAMESPACES.iter().find(|n| **n == first).copied()
}

/// Splits `--platform linux/<arch>[/<variant>]` into architecture and variant.
pub fn split_platform(platform: &str) -> Result<(String, Option<String>)> {
    let parts: Vec<&str> = platform.split('/').collect();
    match parts.as_slice() {
        ["linux", arch] if !arch.is_empty() => Ok((arch.to_string(), None)),
        ["linux", arch, variant] if !arch.is_empty() && !variant.is_empty() => {
            Ok((arch.to_string(), Some(variant.to_string())))
        }
        _ => bail!("invalid platform {platform:?}: expected linux/<arch>[/<variant>]"),
    }
}

/// True if `APPTAINER_NOHTTPS` or `APPTAINER_NO_HTTPS` asks for plain HTTP.
pub fn no_https_from_env() -> bool {
    env::flag("APPTAINER_NOHTTPS") || env::flag("APPTAINER_NO_HTTPS")
}

/// `APPTAINER_DOCKER_HOST`, else `DOCKER_HOST`.
pub fn docker_host_from_env() -> Option<String> {
    ["APPTAINER_DOCKER_HOST", "DOCKER_HOST"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Parses an image URI, refusing anything that is not an OCI image source.
#[allow(dead_code)] // for the action commands
pub fn parse_image_uri(uri: &str) -> Result<Source> {
    match Source::parse(uri)? {
        Some(s) => Ok(s),
        None => bail!("{uri:?} is not an image URI (expected docker://, docker-archive:, docker-daemon:, oci: or oci-archive:)"),
    }
}

/// The SIF for an OCI image URI, converted into the cache on first use and reused after
/// (`INFO:    Using cached SIF image`). With `disable_cache` the SIF is built in a
/// temporary directory that is left for the caller (the process execs the container).
#[allow(dead_code)] // for the action commands
pub fn sif_for_uri(uri: &str, opts: &PullOptions) -> Result<PathBuf> {
    let _watch = interrupt::Watch::install()?;
    let source = parse_image_uri(uri)?;
    let cache = Cache::open(opts.disable_cache)?;
    let sif = cached_sif(&source, opts, &cache)?;
    if cache.is_temporary() {
        hand_over_temporary(cache, &sif)?;
    }
    Ok(sif)
}

/// With `--disable-cache` the container runs from a SIF in a temporary cache, and this
/// process becomes the starter (exec), so nothing of ours is left to remove it at the
/// end. The blobs go now; the rest is removed by a small detached watcher once this
/// process (then the starter, then the container) has exited, as the reference's
/// runtime parent removes its temporary directory.
fn hand_over_temporary(cache: Cache, sif: &Path) -> Result<()> {
    for kind in ["blob", ".locks"] {
        interrupt::remove_path(&cache.root().join(kind));
    }
    // Without a watcher the temporary cache would outlive us: better not run.
    crate::cache::remove_after_exit(cache.root(), std::process::id()).with_context(|| {
        format!(
            "cannot arrange removal of the temporary cache for {}",
            sif.display()
        )
    })?;
    crate::debug!(
        "{} is removed when the container exits",
        cache.root().display()
    );
    cache.keep();
    Ok(())
}

/// Converts (or reuses) the image's SIF in `cache`; returns its path there.
fn cached_sif(source: &Source, opts: &PullOptions, cache: &Cache) -> Result<PathBuf> {
    let fetch_opts = opts.fetch_options(source)?;
    let platform = fetch_opts.platform.clone();
    // Registry images are keyed by what the reference resolves to now: one manifest
    // request, as Apptainer makes, so a moved tag is noticed.
    if let Some(digest) = sources::resolve_remote_digest(source, &fetch_opts)? {
        let entry = cache.sif_entry(&sif_key(&digest, &platform))?;
        if entry.is_file() {
            info!("Using cached SIF image");
            return Ok(entry);
        }
        info!("Converting OCI blobs to SIF format");
        let key = sif_key(&digest, &platform);
        let _lock = cache.lock("oci-tmp", &key)?;
        if entry.is_file() {
            info!("Using cached SIF image");
            return Ok(entry);
        }
        cache.remove_stale_sif_temps(&key)?;
        let (image, scanned) = fetch_image_scanning(source, &fetch_opts, cache)?;
        convert_to_sif(&image, scanned, &entry)?;
        return Ok(entry);
    }
    // Archives and layouts: the manifest digest is known once they are read.
    let image = fetch_image(source, &fetch_opts, cache)?;
    let key = sif_key(&Digest::parse(&image.manifest_digest)?, &platform);
    let entry = cache.sif_entry(&key)?;
    let _lock = cache.lock("oci-tmp", &key)?;
    if entry.is_file() {
        info!("Using cached SIF image");
        return Ok(entry);
    }
    cache.remove_stale_sif_temps(&key)?;
    info!("Converting OCI blobs to SIF format");
    convert_to_sif(&image, None, &entry)?;
    Ok(entry)
}

/// Apptainer's key: sha256 of the manifest digest's hex, the architecture and variant.
fn sif_key(digest: &Digest, platform: &Platform) -> String {
    let mut h = Sha256::new();
    h.update(digest.hex().as_bytes());
    h.update(platform.architecture.as_bytes());
    h.update(platform.variant_str().as_bytes());
    hex::encode(h.finalize())
}

fn fetch_image(source: &Source, opts: &FetchOptions, cache: &Cache) -> Result<FetchedImage> {
    info!("Starting build...");
    info!("Fetching OCI image...");
    sources::fetch(source, opts, cache)
}

fn convert_options(fix_perms: bool) -> crate::convert::ConvertOptions {
    crate::convert::ConvertOptions {
        tmpdir: crate::cache::temp_base(),
        fix_perms,
        ..Default::default()
    }
}

/// Fetches the image while another thread reads each layer's headers as it downloads:
/// the conversion then starts packing as soon as the last byte is verified. If that
/// reading fails (a retried transfer, a layer that is not a tar), the conversion reads
/// the headers from the cache instead.
fn fetch_image_scanning(
    source: &Source,
    opts: &FetchOptions,
    cache: &Cache,
) -> Result<(FetchedImage, Option<crate::convert::Scanned>)> {
    info!("Starting build...");
    info!("Fetching OCI image...");
    let mut scan = None;
    let fetched = sources::fetch_following(source, opts, cache, &mut |feeds| {
        scan = Some(std::thread::spawn(move || {
            crate::convert::scan_following(feeds)
        }));
    });
    // Joined whatever the fetch's outcome: every feed is finished or failed by now.
    let scanned = match scan.map(|h| h.join()) {
        Some(Ok(Ok(s))) => Some(s),
        Some(Ok(Err(e))) => {
            crate::debug!("reading the layers during the download failed: {e:#}");
            None
        }
        Some(Err(_)) | None => None,
    };
    Ok((fetched?, scanned))
}

fn convert_to_sif(
    image: &FetchedImage,
    scanned: Option<crate::convert::Scanned>,
    out: &Path,
) -> Result<()> {
    info!("Creating SIF file...");
    crate::convert::to_sif_scanned(image, scanned, out, &convert_options(false))
        .with_context(|| format!("while converting {} to SIF", image.reference))
}

/// `apptainer pull`/`build` to a SIF file: refuses an existing `dest` unless `force`,
/// checks the directory is writable before any download, and copies atomically.
pub fn pull_to_file(source: &Source, dest: &Path, force: bool, opts: &PullOptions) -> Result<()> {
    check_output(dest, force)?;
    let _watch = interrupt::Watch::install()?;
    let cache = Cache::open(opts.disable_cache)?;
    if opts.fix_perms {
        // Not the cached conversion: build this one straight into place.
        let image = fetch_image(source, &opts.fetch_options(source)?, &cache)?;
        info!("Creating SIF file...");
        return crate::convert::to_sif(&image, dest, &convert_options(true))
            .with_context(|| format!("while converting {} to SIF", image.reference));
    }
    let sif = cached_sif(source, opts, &cache)?;
    copy_atomic(&sif, dest, force)
}

/// `--sandbox`: converts into a directory, built beside `dest` and renamed into place.
pub fn pull_to_sandbox(
    source: &Source,
    dest: &Path,
    force: bool,
    opts: &PullOptions,
) -> Result<()> {
    check_output(dest, force)?;
    let _watch = interrupt::Watch::install()?;
    let cache = Cache::open(opts.disable_cache)?;
    let fetch_opts = opts.fetch_options(source)?;
    let image = fetch_image(source, &fetch_opts, &cache)?;
    let parent = parent_dir(dest);
    let (work, _registered) = interrupt::temp(|| {
        tempfile::Builder::new()
            .prefix(".tmp-sandbox-")
            .tempdir_in(&parent)
    })
    .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let root = work.path().join("rootfs");
    crate::convert::to_sandbox(&image, &root, &convert_options(opts.fix_perms))
        .with_context(|| format!("while converting {} to a sandbox", image.reference))?;
    if dest.exists() {
        // Only reached with --force (check_output refused otherwise).
        remove_path(dest)?;
    }
    fs::rename(&root, dest).with_context(|| format!("moving the sandbox to {}", dest.display()))?;
    Ok(())
}

/// Refuses to overwrite without `force` and fails early on an unwritable directory.
pub fn check_output(dest: &Path, force: bool) -> Result<()> {
    if !force && fs::symlink_metadata(dest).is_ok() {
        bail!("image file already exists: {:?} - will not overwrite", dest);
    }
    let parent = parent_dir(dest);
    let meta = fs::metadata(&parent).with_context(|| format!("output directory {:?}", parent))?;
    if !meta.is_dir() {
        bail!("output directory {:?} is not a directory", parent);
    }
    nix::unistd::access(
        &parent,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot write to output directory {:?}: {}",
            parent,
            e.desc()
        )
    })?;
    if force && dest.is_dir() && !dest.is_symlink() && fs::read_dir(dest).is_err() {
        bail!("cannot replace {:?}", dest);
    }
    Ok(())
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn remove_path(p: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(p)?;
    if meta.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .with_context(|| format!("removing {}", p.display()))
}

/// Copies `src` to `dest` through a temp file in `dest`'s directory and a rename, so
/// `dest` is either absent, the old file, or the complete new one.
pub fn copy_atomic(src: &Path, dest: &Path, force: bool) -> Result<()> {
    let parent = parent_dir(dest);
    let (mut tmp, _registered) = interrupt::temp(|| {
        tempfile::Builder::new()
            .prefix(".tmp-pull-")
            .tempfile_in(&parent)
    })
    .with_context(|| format!("cannot write to output directory {:?}", parent))?;
    let mut input = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    io::copy(&mut input, tmp.as_file_mut())
        .with_context(|| format!("writing {}", dest.display()))?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all().ok();
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o755))
        .ok();
    if force {
        if dest.is_dir() && !dest.is_symlink() {
            remove_path(dest)?;
        }
        tmp.persist(dest).map_err(|e| e.error)
    } else {
        tmp.persist_noclobber(dest).map_err(|e| e.error)
    }
    .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sif_key_depends_on_digest_and_platform() {
        let d = Digest::of_bytes(b"m");
        let amd = Platform::select(Some("amd64"), None).unwrap();
        let arm = Platform::select(Some("arm"), Some("v6")).unwrap();
        assert_ne!(sif_key(&d, &amd), sif_key(&d, &arm));
        assert_eq!(sif_key(&d, &amd), sif_key(&d, &amd));
        let mut h = Sha256::new();
        h.update(format!("{}amd64", d.hex()));
        assert_eq!(sif_key(&d, &amd), hex::encode(h.finalize()));
    }

    #[test]
    fn docker_hub_arch_namespaces_choose_the_platform() {
        let opts = PullOptions::from_env();
        let src = |u: &str| parse_image_uri(u).unwrap();
        let p = opts.platform_for(&src("docker://arm64v8/alpine")).unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let p = opts.platform_for(&src("docker://arm32v6/alpine")).unwrap();
        assert_eq!(p.to_string(), "linux/arm/v6");
        let host = Platform::host();
        assert_eq!(opts.platform_for(&src("docker://alpine")).unwrap(), host);
        assert_eq!(
            opts.platform_for(&src("docker://quay.io/arm64v8/x"))
                .unwrap(),
            host
        );
    }

    #[test]
    fn platforms_split_into_arch_and_variant() {
        assert_eq!(
            split_platform("linux/arm64/v8").unwrap(),
            ("arm64".into(), Some("v8".into()))
        );
        assert_eq!(
            split_platform("linux/amd64").unwrap(),
            ("amd64".into(), None)
        );
        assert!(split_platform("windows/amd64").is_err());
        assert!(split_platform("amd64").is_err());
    }

    #[test]
    fn existing_output_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.sif");
        fs::write(&dest, b"old").unwrap();
        let err = check_output(&dest, false).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert!(check_output(&dest, true).is_ok());
        let src = dir.path().join("src");
        fs::write(&src, b"new").unwrap();
        assert!(copy_atomic(&src, &dest, false).is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        copy_atomic(&src, &dest, true).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
