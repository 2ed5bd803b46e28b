//! `Bootstrap: debootstrap`: a Debian root made by Debian's debootstrap from the stage's
//! `OSVersion`, `MirrorURL` (or the machine's configured Debian mirror) and `Include`,
//! with the reference's arguments (variant minbase, apt always included).
//!
//! Root runs debootstrap as it is. A fakeroot build runs it as root of the caller's
//! subordinate-id mapping (so packages can own files as their users), in private mount
//! and PID namespaces of that mapping. There, as under the reference's fakeroot build,
//! device nodes cannot be made: the host's `null`, `zero`, `full`, `random`, `urandom`
//! and `tty` are bind-mounted on placeholder files of the new root and `mknod` is masked
//! by `true` for debootstrap's checks. The binds vanish with the namespaces, leaving the
//! placeholders, which the runtime covers with its own `/dev` when the container runs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::idmap::SubIdMap;
use super::StageContext;
use crate::deffile::Header;

/// Packages the reference leaves out of its minbase root.
const EXCLUDE: &str = "openssl,udev,debconf-i18n,e2fsprogs";

/// Run with `sh -c` inside the namespaces: `$1` the new root, `$2` true, `$3` mknod,
/// then the debootstrap command. The user's values only ever arrive as arguments.
const FAKEROOT_SCRIPT: &str = r#"set -e
root=$1; truebin=$2; mknodbin=$3; shift 3
mkdir -p "$root/dev"
for d in null zero full random urandom tty; do
    : > "$root/dev/$d"
    mount --bind "/dev/$d" "$root/dev/$d"
done
mount --bind "$truebin" "$mknodbin"
exec "$@"
"#;

/// Everything debootstrap is asked for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    suite: String,
    mirror: String,
    include: Vec<String>,
    arch: &'static str,
}

pub fn run(ctx: &StageContext<'_>) -> Result<()> {
    let program = find_program("debootstrap")
        .context("debootstrap is not installed (Debian package debootstrap)")?;
    let req = request(&ctx.stage.header, std::env::var("INCLUDE").ok().as_deref())?;
    let is_root = nix::unistd::geteuid().is_root();
    let map = ctx.opts.subids.as_ref();
    if !is_root && map.is_none() {
        bail!(
            "the debootstrap agent needs root, or a fakeroot build by a user with a \
             range in /etc/subuid and /etc/subgid (packages give files to their own users)"
        );
    }
    crate::info!("Running debootstrap {} from {}", req.suite, req.mirror);
    let args = debootstrap_args(&req, ctx.rootfs);
    let status = match map {
        Some(map) if !is_root => fakeroot_command(map, &program, &args, ctx.rootfs)?.status(),
        _ => Command::new(&program).args(&args).status(),
    }
    .context("running debootstrap")?;
    if !status.success() {
        bail!(
            "debootstrap failed ({status}){}",
            last_log_line(ctx.rootfs)
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        );
    }
    // debootstrap leaves its target as the umask made it; an image's / is 0755.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(ctx.rootfs, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", ctx.rootfs.display()))?;
    Ok(())
}

/// The request from the stage's header (`include_env`: the `INCLUDE` variable, which
/// the reference appends to `Include:`).
fn request(header: &Header, include_env: Option<&str>) -> Result<Request> {
    let value = |key: &str| {
        header
            .get(key)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let Some(suite) = value("osversion") else {
        bail!("the debootstrap agent needs an \"OSVersion:\" header");
    };
    let mirror = value("mirrorurl").or_else(debian_mirror).context(
        "the debootstrap agent needs a \"MirrorURL:\" header (no Debian mirror is configured on this machine)",
    )?;
    let include = [
        value("include").unwrap_or_default(),
        include_env.unwrap_or("").to_string(),
    ]
    .iter()
    .flat_map(|s| s.split([',', ' ', '\t']))
    .filter(|s| !s.is_empty())
    .map(str::to_string)
    .collect();
    let Some(arch) = debian_arch(std::env::consts::ARCH) else {
        bail!(
            "the debootstrap agent does not know the Debian name of architecture {}",
            std::env::consts::ARCH
        );
    };
    Ok(Request {
        suite,
        mirror,
        include,
        arch,
    })
}

/// debootstrap's arguments, as the reference passes them.
fn debootstrap_args(req: &Request, rootfs: &Path) -> Vec<OsString> {
    let mut include = vec!["apt".to_string()];
    include.extend(req.include.iter().filter(|p| *p != "apt").cloned());
    vec![
        "--variant=minbase".into(),
        format!("--exclude={EXCLUDE}").into(),
        format!("--include={}", include.join(",")).into(),
        format!("--arch={}", req.arch).into(),
        req.suite.clone().into(),
        rootfs.into(),
        req.mirror.clone().into(),
    ]
}

/// debootstrap as root of the fakeroot mapping, with the host's devices bound in and
/// `mknod` masked (see the module header).
fn fakeroot_command(
    map: &SubIdMap,
    program: &Path,
    args: &[OsString],
    rootfs: &Path,
) -> Result<Command> {
    let truebin = find_program("true").context("`true` is not installed")?;
    let mknod = find_program("mknod").context("`mknod` is not installed")?;
    let mut sh_args: Vec<OsString> = vec![
        "-c".into(),
        FAKEROOT_SCRIPT.into(),
        "debootstrap".into(),
        rootfs.into(),
        truebin.into(),
        mknod.into(),
        program.into(),
    ];
    sh_args.extend(args.iter().cloned());
    let mut cmd = map.isolated_command("/bin/sh", &sh_args);
    // debootstrap finds mknod through PATH: the standard one is the one masked.
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    Ok(cmd)
}

/// The last message of the target's `debootstrap/debootstrap.log`, which says why a
/// package failed where debootstrap's own output does not.
fn last_log_line(rootfs: &Path) -> Option<String> {
    let log = fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")).ok()?;
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Debian's name for a Rust target architecture (Debian ports).
fn debian_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" => "mips64el",
        _ => return None,
    })
}

/// The host's Debian mirror (from its apt sources), for a def file without `MirrorURL`.
fn debian_mirror() -> Option<String> {
    let mut texts: Vec<String> = fs::read_to_string("/etc/apt/sources.list")
        .into_iter()
        .collect();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    first_debian_uri(texts.iter().map(String::as_str))
}

/// The first `http(s)` URI ending in `/debian` of one-line (`deb URI ...`) or deb822
/// (`URIs: ...`) sources.
fn first_debian_uri<'a>(texts: impl Iterator<Item = &'a str>) -> Option<String> {
    texts
        .flat_map(str::lines)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("deb ").or_else(|| l.strip_prefix("URIs:"))
        })
        .flat_map(str::split_whitespace)
        .filter(|w| !w.starts_with('['))
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_comes_from_one_line_or_deb822_sources() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            first_debian_uri([deb822].into_iter()).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "deb [arch=amd64] https://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            first_debian_uri([one_line].into_iter()).as_deref(),
            Some("https://mirror.example/debian/")
        );
        let other = "deb https://packages.cloud.google.com/apt cloud-sdk main\n";
        assert_eq!(first_debian_uri([other].into_iter()), None);
    }

    #[test]
    fn arguments_always_include_apt_once() {
        let req = Request {
            suite: "bookworm".into(),
            mirror: "http://m/debian".into(),
            include: vec!["hello".into(), "apt".into(), "less".into()],
            arch: "amd64",
        };
        let args = debootstrap_args(&req, Path::new("/r"));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--variant=minbase",
                "--exclude=openssl,udev,debconf-i18n,e2fsprogs",
                "--include=apt,hello,less",
                "--arch=amd64",
                "bookworm",
                "/r",
                "http://m/debian"
            ]
        );
    }
}
