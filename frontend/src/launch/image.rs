//! Which image to start: a SIF file, a bare squashfs file or a sandbox directory, or a URI
//! that the pull code converts into a cached SIF first. The kind is read from the file's
//! magic, never guessed from its name.

use anyhow::{bail, Context, Result};
use starter::plan::ImageKind;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An image on the host, ready to be named in a Plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Absolute host path.
    pub path: PathBuf,
    pub kind: ImageKind,
}

/// URI schemes the pull code turns into a SIF.
const CONVERTED_SCHEMES: [&str; 6] = [
    "docker://",
    "docker-archive:",
    "oci-archive:",
    "oci:",
    "docker-daemon:",
    "library://",
];

/// Resolves what the user typed.
pub fn resolve(image: &str, disable_cache: bool, no_https: bool) -> Result<ResolvedImage> {
    if image.starts_with("instance://") {
        bail!("{image}: running in instances is not supported by this build yet");
    }
    if let Some(scheme) = CONVERTED_SCHEMES.iter().find(|s| image.starts_with(*s)) {
        let sif = convert_uri(image, scheme, disable_cache, no_https)?;
        return local(&sif.to_string_lossy());
    }
    if let Some((scheme, _)) = image.split_once("://") {
        bail!("{image}: unsupported image URI scheme {scheme:?}");
    }
    local(image)
}

/// Converts (or reuses from the cache) the SIF of an OCI image URI. Registry flags come
/// from the environment (`APPTAINER_NOHTTPS`, `APPTAINER_DOCKER_HOST`...), as for the
/// reference's action commands.
fn convert_uri(image: &str, scheme: &str, disable_cache: bool, no_https: bool) -> Result<PathBuf> {
    if scheme == "library://" {
        bail!("{image}: library:// images are not supported by this build yet");
    }
    let mut opts = crate::pull::PullOptions::from_env();
    opts.disable_cache |= disable_cache;
    opts.no_https |= no_https;
    crate::pull::sif_for_uri(image, &opts).with_context(|| format!("while preparing {image}"))
}

/// A local path: made absolute against the current directory (not canonicalised: the
/// starter opens it as the user and checks the real path itself).
pub fn local(image: &str) -> Result<ResolvedImage> {
    let path = absolute(Path::new(image))?;
    let meta = std::fs::metadata(&path).with_context(|| format!("image {image:?}"))?;
    let kind = if meta.is_dir() {
        ImageKind::Sandbox
    } else if meta.is_file() {
        kind_from_magic(&path).with_context(|| format!("image {image:?}"))?
    } else {
        bail!("image {image:?} is neither a file nor a directory");
    };
    Ok(ResolvedImage { path, kind })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(cwd.join(p))
}

/// SIF files start with a 32-byte launch line followed by `SIF_MAGIC`; squashfs with `hsqs`.
fn kind_from_magic(path: &Path) -> Result<ImageKind> {
    let mut head = [0u8; 48];
    let mut f = std::fs::File::open(path)?;
    let n = read_up_to(&mut f, &mut head)?;
    let head = &head[..n];
    if head.len() >= 41 && &head[32..41] == b"SIF_MAGIC" {
        Ok(ImageKind::Sif)
    } else if head.starts_with(b"hsqs") {
        Ok(ImageKind::Squashfs)
    } else {
        bail!("not a SIF file, a squashfs image or a sandbox directory")
    }
}

/// Fills `buf` from the start of `f`, short only at end of file (magic-byte probes).
pub(super) fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads a few small files of the image (e.g. `etc/passwd`), as the caller: directly from a
/// sandbox, with `unsquashfs -cat` from a SIF's or bare squashfs image's filesystem. The
/// reads run in parallel; a file that cannot be read is `None`.
pub fn read_files(img: &ResolvedImage, paths: &[&str]) -> Vec<Option<String>> {
    match img.kind {
        ImageKind::Sandbox => paths
            .iter()
            .map(|p| std::fs::read_to_string(img.path.join(p)).ok())
            .collect(),
        ImageKind::Sif | ImageKind::Squashfs => {
            let Some(offset) = squashfs_offset(img) else {
                return vec![None; paths.len()];
            };
            let children: Vec<_> = paths
                .iter()
                .map(|p| spawn_cat(&img.path, offset, p))
                .collect();
            children.into_iter().map(|c| c.and_then(wait_cat)).collect()
        }
    }
}

/// Where the root squashfs starts in a SIF or bare squashfs file.
pub fn squashfs_offset(img: &ResolvedImage) -> Option<u64> {
    if img.kind == ImageKind::Squashfs {
        return Some(0);
    }
    let mut f = std::fs::File::open(&img.path).ok()?;
    let part = sif::primary_partition(&mut f).ok()?;
    (part.fs_type == sif::FsType::Squash).then_some(part.offset)
}

fn spawn_cat(image: &Path, offset: u64, path: &str) -> Option<std::process::Child> {
    std::process::Command::new("unsquashfs")
        .args(["-o", &offset.to_string(), "-cat"])
        .arg(image)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

fn wait_cat(child: std::process::Child) -> Option<String> {
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

/// The basename shown as `APPTAINER_NAME`.
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// A running `unsquashfs -lls` of the image's /bin, /usr/bin, /.singularity.d and
/// /environment, to learn whether it has a `/bin/sh` and which env scripts without mounting
/// it. Started early so it overlaps the other reads.
pub struct ShellProbe(Option<std::process::Child>);

/// The env scripts' directory, relative to the image root.
pub const ENV_DIR: &str = ".singularity.d/env";

impl ShellProbe {
    /// Starts the listing for SIF and squashfs images; sandboxes are checked directly.
    pub fn start(img: &ResolvedImage) -> ShellProbe {
        if img.kind == ImageKind::Sandbox {
            return ShellProbe(None);
        }
        let child = squashfs_offset(img).and_then(|offset| {
            std::process::Command::new("unsquashfs")
                .args(["-o", &offset.to_string(), "-lls", "-d", ""])
                .arg(&img.path)
                .args(["bin", "usr/bin", ".singularity.d", "environment"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()
        });
        ShellProbe(child)
    }

    /// Whether `/bin/sh` resolves to a regular file (when the listing cannot be had, the
    /// image is assumed to have a shell, as nearly all do), and the env scripts' names (see
    /// `env_names`).
    pub fn finish(self, img: &ResolvedImage) -> (bool, Option<Vec<String>>) {
        if img.kind == ImageKind::Sandbox {
            return (sandbox_has_shell(&img.path), sandbox_env_names(&img.path));
        }
        let Some(out) = self.0.and_then(wait_cat) else {
            return (true, None);
        };
        let listing = parse_listing(&out);
        let kind = |p: &str| listing.get(p).map(|(k, _)| *k);
        let (dir, prefix) = (format!("/{ENV_DIR}"), format!("/{ENV_DIR}/"));
        let entries = listing.iter().filter_map(|(path, (k, _))| {
            let name = path.strip_prefix(&prefix)?;
            Some((name.to_string(), *k == '-'))
        });
        let names = env_names(
            kind("/.singularity.d"),
            kind(&dir),
            kind("/environment").is_some(),
            entries,
        );
        (resolve_in_listing(&listing, "/bin/sh", 0).is_some(), names)
    }
}

/// The names in the env directory, as action.sh would source them: `Some(empty)` when the
/// image has no env directory and no `/environment` (action.sh then sources nothing);
/// `None` when a link is on the way, an entry is not a regular `*.sh` file (`entries`: name,
/// is a regular file) or there is only `/environment`: only the shell can tell then.
fn env_names(
    singularity_d: Option<char>,
    env_dir: Option<char>,
    environment: bool,
    entries: impl Iterator<Item = (String, bool)>,
) -> Option<Vec<String>> {
    match (singularity_d, env_dir) {
        (None | Some('d'), None) if !environment => Some(Vec::new()),
        (Some('d'), Some('d')) => entries
            .map(|(n, file)| (file && n.ends_with(".sh") && !n.contains('/')).then_some(n))
            .collect(),
        _ => None,
    }
}

fn sandbox_env_names(root: &Path) -> Option<Vec<String>> {
    let kind = |p: &str| {
        let m = std::fs::symlink_metadata(root.join(p)).ok()?;
        Some(if m.is_dir() {
            'd'
        } else if m.is_file() {
            '-'
        } else {
            'l'
        })
    };
    let (sd, env) = (kind(".singularity.d"), kind(ENV_DIR));
    let entries: Vec<(String, bool)> = match env {
        Some('d') => std::fs::read_dir(root.join(ENV_DIR))
            .ok()?
            .map(|e| {
                let e = e.ok()?;
                Some((
                    e.file_name().into_string().ok()?,
                    e.file_type().ok()?.is_file(),
                ))
            })
            .collect::<Option<_>>()?,
        _ => Vec::new(),
    };
    env_names(sd, env, kind("environment").is_some(), entries.into_iter())
}

/// `unsquashfs -lls -d ""` lines: `perms owner/group size date time /path[ -> target]`,
/// as path -> (type letter, link target).
fn parse_listing(out: &str) -> std::collections::HashMap<String, (char, String)> {
    let mut map = std::collections::HashMap::new();
    for line in out.lines() {
        let Some(kind) = line.chars().next() else {
            continue;
        };
        let Some(idx) = line.find(" /") else { continue };
        let rest = &line[idx + 1..];
        let (path, target) = match (kind, rest.split_once(" -> ")) {
            ('l', Some((p, t))) => (p, t),
            _ => (rest, ""),
        };
        map.insert(path.to_string(), (kind, target.to_string()));
    }
    map
}

/// Follows symlinks component by component inside the listing (absolute targets are
/// relative to the image root); returns the final path of a regular file.
fn resolve_in_listing(
    listing: &std::collections::HashMap<String, (char, String)>,
    path: &str,
    depth: u32,
) -> Option<String> {
    if depth > 16 {
        return None;
    }
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut cur = String::new();
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            cur.truncate(cur.rfind('/').unwrap_or(0));
            continue;
        }
        let next = format!("{cur}/{c}");
        let Some((kind, target)) = listing.get(&next) else {
            // A parent of listed entries, even if its own line is missing.
            let prefix = format!("{next}/");
            listing
                .keys()
                .any(|k| k.starts_with(&prefix))
                .then_some(())?;
            cur = next;
            continue;
        };
        if *kind == 'l' {
            let rest = comps[i + 1..].join("/");
            let joined = if target.starts_with('/') {
                format!("{target}/{rest}")
            } else {
                format!("{cur}/{target}/{rest}")
            };
            return resolve_in_listing(listing, &joined, depth + 1);
        }
        cur = next;
    }
    matches!(listing.get(&cur), Some(('-', _))).then_some(cur)
}

/// Whether a sandbox has an executable `/bin/sh`, resolving symlinks inside the sandbox (an
/// absolute link target means the sandbox root, not the host's).
pub fn sandbox_has_shell(root: &Path) -> bool {
    resolve_in_root(root, "/bin/sh", 0)
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.is_file())
}

fn resolve_in_root(root: &Path, path: &str, depth: u32) -> Option<PathBuf> {
    if depth > 16 {
        return None;
    }
    let mut cur = PathBuf::from("/");
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(c);
        let host = root.join(next.strip_prefix("/").ok()?);
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host).ok()?;
            let target = target.to_string_lossy();
            let rest = comps[i + 1..].join("/");
            let joined = if target.starts_with('/') {
                format!("{target}/{rest}")
            } else {
                format!("{}/{target}/{rest}", cur.display())
            };
            return resolve_in_root(root, &joined, depth + 1);
        }
        cur = next;
    }
    Some(root.join(cur.strip_prefix("/").ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_magic_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let sif = dir.path().join("a.img");
        let mut bytes = b"#!/usr/bin/env run-singularity\n\0".to_vec();
        bytes.extend_from_slice(b"SIF_MAGIC\0rest");
        std::fs::write(&sif, bytes).unwrap();
        assert_eq!(local(sif.to_str().unwrap()).unwrap().kind, ImageKind::Sif);
        let sq = dir.path().join("b.sif");
        std::fs::write(&sq, b"hsqs....").unwrap();
        assert_eq!(
            local(sq.to_str().unwrap()).unwrap().kind,
            ImageKind::Squashfs
        );
        let other = dir.path().join("c");
        std::fs::write(&other, b"hello").unwrap();
        let err = local(other.to_str().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("not a SIF file"), "{err:#}");
        assert_eq!(
            local(dir.path().to_str().unwrap()).unwrap().kind,
            ImageKind::Sandbox
        );
        assert!(local("/no/such/image.sif").is_err());
    }

    #[test]
    fn instances_and_unknown_schemes_are_refused() {
        assert!(resolve("instance://x", false, false).is_err());
        let err = resolve("ftp://x/y", false, false).unwrap_err().to_string();
        assert!(err.contains("unsupported image URI scheme"), "{err}");
    }

    #[test]
    fn shell_lookup_in_a_squashfs_listing_follows_links() {
        let busybox = "drwxr-xr-x root/root 185 2026-12-04 16:34 \n\
            drwxr-xr-x root/root 996 2023-11-14 22:13 /bin\n\
            -rwxr-xr-x root/root 1000 2023-11-14 22:13 /bin/busybox\n\
            lrwxrwxrwx root/root 12 2023-11-14 22:13 /bin/sh -> /bin/busybox\n";
        assert_eq!(
            resolve_in_listing(&parse_listing(busybox), "/bin/sh", 0).as_deref(),
            Some("/bin/busybox")
        );
        let merged = "lrwxrwxrwx root/root 7 2023-11-14 22:13 /bin -> usr/bin\n\
            drwxr-xr-x root/root 9 2023-11-14 22:13 /usr/bin\n\
            lrwxrwxrwx root/root 4 2023-11-14 22:13 /usr/bin/sh -> dash\n\
            -rwxr-xr-x root/root 9 2023-11-14 22:13 /usr/bin/dash\n";
        assert_eq!(
            resolve_in_listing(&parse_listing(merged), "/bin/sh", 0).as_deref(),
            Some("/usr/bin/dash")
        );
        let distroless = "drwxr-xr-x root/root 185 2026-12-04 16:34 \n";
        assert_eq!(
            resolve_in_listing(&parse_listing(distroless), "/bin/sh", 0),
            None
        );
    }

    #[test]
    fn shell_lookup_follows_links_inside_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(!sandbox_has_shell(root));
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/dash"), b"").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dash", root.join("usr/bin/sh")).unwrap();
        assert!(sandbox_has_shell(root));
    }

    #[test]
    fn env_scripts_are_known_only_without_links_odd_entries_or_a_lone_environment() {
        let e = |v: &[(&str, bool)]| {
            v.iter()
                .map(|(n, f)| (n.to_string(), *f))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let ok = [("01-base.sh", true), ("99-base.sh", true)];
        assert_eq!(
            env_names(Some('d'), Some('d'), true, e(&ok)).unwrap().len(),
            2
        );
        assert_eq!(env_names(None, None, false, e(&[])), Some(vec![]));
        assert_eq!(env_names(Some('d'), None, false, e(&[])), Some(vec![]));
        assert_eq!(env_names(None, None, true, e(&[])), None);
        assert_eq!(env_names(Some('l'), None, false, e(&[])), None);
        assert_eq!(env_names(Some('d'), Some('l'), false, e(&[])), None);
        assert_eq!(
            env_names(Some('d'), Some('d'), false, e(&[("x.sh", false)])),
            None
        );
        assert_eq!(
            env_names(Some('d'), Some('d'), false, e(&[("x.txt", true)])),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(sandbox_env_names(dir.path()), Some(vec![]));
        std::fs::create_dir_all(dir.path().join(ENV_DIR)).unwrap();
        std::fs::write(dir.path().join(ENV_DIR).join("01-base.sh"), "").unwrap();
        assert_eq!(
            sandbox_env_names(dir.path()),
            Some(vec!["01-base.sh".to_string()])
        );
        std::fs::write(dir.path().join("environment"), "").unwrap();
        std::fs::remove_dir_all(dir.path().join(".singularity.d")).unwrap();
        assert_eq!(sandbox_env_names(dir.path()), None);
    }
}
