//! The container's mounts, computed like the reference's defaults (apptainer-facts.md §3.5):
//! proc, sys, dev (+devpts with a minimal /dev), $HOME, /tmp and /var/tmp, `bind path`
//! entries, the user's binds, the current directory, and the generated /etc files, each
//! subject to the `mount *` directives, `--no-mount`, `--no-home` and `--contain`. This is a
//! pure function of its inputs; the starter checks every entry again.

use super::bind::BindSpec;
use super::identity::Identity;
use anyhow::{bail, Result};
use conf::{Conf, MountDev};
use starter::plan::{BindKind, PlanMount};
use std::path::{Path, PathBuf};

/// The mount-related choices of the user.
#[derive(Clone, Debug, Default)]
pub struct MountRequest {
    pub binds: Vec<BindSpec>,
    pub no_mount: Vec<String>,
    /// `--home src[:dst]`.
    pub home: Option<String>,
    pub no_home: bool,
    pub contain: bool,
    pub workdir: Option<PathBuf>,
    /// `--cwd`/`--pwd`.
    pub cwd: Option<String>,
    pub fakeroot: bool,
    pub hostname: Option<String>,
    /// `--dns`: name server addresses for the container's /etc/resolv.conf.
    pub dns: Option<Vec<String>>,
    /// `--scratch` directories.
    pub scratch: Vec<String>,
}

/// The image's /etc/passwd and /etc/group, when the frontend could read them.
#[derive(Clone, Debug, Default)]
pub struct ImageFiles {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// Mounts plus the two container paths the process needs.
#[derive(Clone, Debug, PartialEq)]
pub struct MountPlan {
    pub mounts: Vec<PlanMount>,
    /// HOME inside the container.
    pub home: String,
    /// Working directory of the container process.
    pub cwd: String,
}

/// Everything `compute` needs to know about the host.
pub struct HostFacts<'a> {
    pub id: &'a Identity,
    /// `$HOME` of the caller's environment (the reference's default for `--home`).
    pub env_home: Option<PathBuf>,
    pub resolv_conf: Option<String>,
    pub hostname: Option<String>,
}

/// Computes the mount list.
pub fn compute(
    conf: &Conf,
    req: &MountRequest,
    host: &HostFacts<'_>,
    files: &ImageFiles,
) -> Result<MountPlan> {
    let skip = |name: &str| req.no_mount.iter().any(|n| n == name);
    let mut mounts = Vec::new();
    if conf.mount_proc && !skip("proc") {
        mounts.push(PlanMount::Proc);
    }
    if conf.mount_sys && !skip("sys") {
        mounts.push(PlanMount::Sys);
    }
    let minimal_dev = req.contain || conf.mount_dev == MountDev::Minimal;
    if conf.mount_dev != MountDev::No && !skip("dev") {
        mounts.push(PlanMount::Dev {
            minimal: minimal_dev,
        });
        // With the host's /dev bound, its /dev/pts comes along; a minimal /dev needs its own.
        if minimal_dev && conf.mount_devpts && !skip("devpts") {
            mounts.push(PlanMount::Devpts);
        }
    }
    let size = u32::try_from(conf.sessiondir_max_size).unwrap_or(u32::MAX);
    let home = home_mount(conf, req, host, size, &skip)?;
    let home_dst = home.dst.clone();
    mounts.extend(home.mount.clone());
    let tmp = tmp_mounts(conf, req, size, &skip)?;
    mounts.extend(tmp.iter().cloned());
    for dir in &req.scratch {
        mounts.push(scratch_mount(dir, req.workdir.as_deref(), size)?);
    }
    if !skip("bind-paths") {
        mounts.extend(conf_bind_paths(conf, req, &skip));
    }
    for b in &req.binds {
        mounts.push(user_bind(b, &host.id.cwd)?);
    }
    let cwd = match &req.cwd {
        Some(c) => normalise_dst(c)?,
        None => {
            let home_mounted = home.mount.is_some().then_some(home_dst.as_str());
            let (cwd_mount, cwd) = cwd_mount(req, host.id, &mounts, home_mounted, &skip);
            mounts.extend(cwd_mount);
            cwd
        }
    };
    mounts.extend(etc_files(conf, req, host, files, &home_dst));
    Ok(MountPlan {
        mounts,
        home: home_dst,
        cwd,
    })
}

struct HomeMount {
    mount: Option<PlanMount>,
    dst: String,
}

fn home_mount(
    conf: &Conf,
    req: &MountRequest,
    host: &HostFacts<'_>,
    size: u32,
    skip: &dyn Fn(&str) -> bool,
) -> Result<HomeMount> {
    let default_src = host
        .env_home
        .clone()
        .unwrap_or_else(|| host.id.passwd_home.clone());
    let (src, dst) = match &req.home {
        Some(spec) => match spec.split_once(':') {
            Some((s, d)) => (PathBuf::from(s), d.to_string()),
            None => (PathBuf::from(spec), spec.clone()),
        },
        None if req.fakeroot => (default_src, "/root".to_string()),
        None => (
            default_src.clone(),
            default_src.to_string_lossy().into_owned(),
        ),
    };
    let dst = normalise_dst(&dst)?;
    if req.no_home || !conf.mount_home || skip("home") {
        return Ok(HomeMount { mount: None, dst });
    }
    if req.contain && req.home.is_none() {
        // An empty home that vanishes with the container, or one kept in --workdir.
        let mount = match &req.workdir {
            Some(w) => workdir_bind(w, "home", &dst)?,
            None => PlanMount::Tmpfs {
                dst: dst.clone(),
                size_mib: size,
            },
        };
        return Ok(HomeMount {
            mount: Some(mount),
            dst,
        });
    }
    let src = absolute(&src, &host.id.cwd);
    if !src.is_dir() {
        bail!(
            "home directory {:?} does not exist or is not a directory",
            src.display()
        );
    }
    // Only the caller's own passwd home counts as the `mount home` bind; anything else is
    // a user bind and needs `user bind control`.
    let kind = if src == host.id.passwd_home {
        BindKind::Home
    } else {
        BindKind::User
    };
    let mount = PlanMount::Bind {
        src,
        dst: dst.clone(),
        read_only: false,
        kind,
    };
    Ok(HomeMount {
        mount: Some(mount),
        dst,
    })
}

fn tmp_mounts(
    conf: &Conf,
    req: &MountRequest,
    size: u32,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Vec<PlanMount>> {
    if !conf.mount_tmp || skip("tmp") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (dir, sub) in [("/tmp", "tmp"), ("/var/tmp", "var_tmp")] {
        out.push(match (req.contain, &req.workdir) {
            (true, Some(w)) => workdir_bind(w, sub, dir)?,
            (true, None) => PlanMount::Tmpfs {
                dst: dir.into(),
                size_mib: size,
            },
            (false, _) => PlanMount::Bind {
                src: dir.into(),
                dst: dir.into(),
                read_only: false,
                kind: BindKind::Tmp,
            },
        });
    }
    Ok(out)
}

/// `--scratch DIR`: an empty directory at DIR for this container only, kept under
/// `--workdir` when given (as `scratch/DIR`), else a tmpfs.
fn scratch_mount(dir: &str, workdir: Option<&Path>, size: u32) -> Result<PlanMount> {
    let dst = normalise_dst(dir)?;
    if dst == "/" {
        bail!("--scratch {dir:?}: the container root cannot be a scratch directory");
    }
    Ok(match workdir {
        Some(w) => workdir_bind(&w.join("scratch"), &dst[1..], &dst)?,
        None => PlanMount::Tmpfs {
            dst,
            size_mib: size,
        },
    })
}

/// A directory under `--workdir`, created as the caller when missing.
fn workdir_bind(workdir: &Path, sub: &str, dst: &str) -> Result<PlanMount> {
    let src = workdir.join(sub);
    std::fs::create_dir_all(&src)
        .map_err(|e| anyhow::anyhow!("cannot create {:?} in --workdir: {e}", src.display()))?;
    let src = std::fs::canonicalize(&src)?;
    Ok(PlanMount::Bind {
        src,
        dst: dst.into(),
        read_only: false,
        kind: BindKind::User,
    })
}

/// `bind path` entries. Under `--contain` only /etc/localtime and /etc/hosts remain, as in
/// the reference. A missing source is skipped: the admin's list may name optional paths.
fn conf_bind_paths(conf: &Conf, req: &MountRequest, skip: &dyn Fn(&str) -> bool) -> Vec<PlanMount> {
    let mut out = Vec::new();
    for entry in &conf.bind_path {
        let dst = entry.destination.to_string_lossy().into_owned();
        if skip(&dst) {
            continue;
        }
        if req.contain && !matches!(dst.as_str(), "/etc/localtime" | "/etc/hosts") {
            continue;
        }
        if !entry.source.exists() {
            crate::verbose!(
                "bind path {:?} does not exist on the host, skipping",
                entry.source.display()
            );
            continue;
        }
        out.push(PlanMount::Bind {
            src: entry.source.clone(),
            dst,
            read_only: false,
            kind: BindKind::Conf,
        });
    }
    out
}

fn user_bind(b: &BindSpec, cwd: &Path) -> Result<PlanMount> {
    let src = absolute(&b.src, cwd);
    let Ok(meta) = std::fs::metadata(&src) else {
        bail!("bind source {:?} does not exist", b.src.display());
    };
    // A bind must not show the caller anything it could not read on the host. The starter
    // enforces this itself; checking here gives the same refusal before any set-up.
    use nix::unistd::{access, AccessFlags};
    let need = if meta.is_dir() {
        AccessFlags::R_OK | AccessFlags::X_OK
    } else {
        AccessFlags::R_OK
    };
    if access(&src, need).is_err() {
        bail!("bind source {:?} is not readable by you", b.src.display());
    }
    Ok(PlanMount::Bind {
        src,
        dst: normalise_dst(&b.dst)?,
        read_only: b.read_only,
        kind: BindKind::User,
    })
}

/// The current directory is bound onto itself unless `--contain`, `--no-mount cwd`, or an
/// earlier mount already shows it at the same path. The process starts there when it is
/// visible; otherwise in the home directory when that is mounted, else in `/` (the
/// reference's fallbacks when its chdir fails).
fn cwd_mount(
    req: &MountRequest,
    id: &Identity,
    mounts: &[PlanMount],
    home: Option<&str>,
    skip: &dyn Fn(&str) -> bool,
) -> (Option<PlanMount>, String) {
    let fallback = home.unwrap_or("/").to_string();
    let cwd = &id.cwd;
    let Some(cwd_str) = cwd
        .to_str()
        .filter(|s| normalise_dst(s).is_ok_and(|n| n == *s))
    else {
        return (None, fallback);
    };
    // The root and the kernel filesystems exist in every container; they are never bound.
    let system =
        cwd == Path::new("/") || ["/proc", "/sys", "/dev"].iter().any(|s| cwd.starts_with(s));
    if system || covered(mounts, cwd) {
        return (None, cwd_str.to_string());
    }
    if req.contain || skip("cwd") {
        return (None, fallback);
    }
    let bind = PlanMount::Bind {
        src: cwd.clone(),
        dst: cwd_str.to_string(),
        read_only: false,
        kind: BindKind::Cwd,
    };
    (Some(bind), cwd_str.to_string())
}

/// Whether a host bind (src == dst) already makes `path` visible at the same place.
fn covered(mounts: &[PlanMount], path: &Path) -> bool {
    mounts.iter().any(|m| match m {
        PlanMount::Bind { src, dst, .. } => {
            Path::new(dst) == src.as_path() && path.starts_with(src)
        }
        _ => false,
    })
}

fn etc_files(
    conf: &Conf,
    req: &MountRequest,
    host: &HostFacts<'_>,
    files: &ImageFiles,
    home_dst: &str,
) -> Vec<PlanMount> {
    let mut out = Vec::new();
    // Under fakeroot the caller is root inside, which every image already lists.
    if conf.config_passwd && !req.fakeroot {
        let contents = super::identity::passwd_contents(files.passwd.as_deref(), host.id, home_dst);
        out.push(PlanMount::File {
            dst: "/etc/passwd".into(),
            contents,
        });
    }
    if conf.config_group && !req.fakeroot {
        let contents = super::identity::group_contents(files.group.as_deref(), host.id);
        out.push(PlanMount::File {
            dst: "/etc/group".into(),
            contents,
        });
    }
    // `--dns` replaces the host's name servers with the user's.
    let resolv = match &req.dns {
        Some(servers) => Some(
            servers
                .iter()
                .map(|s| format!("nameserver {s}\n"))
                .collect(),
        ),
        None if conf.config_resolv_conf => host.resolv_conf.clone(),
        None => None,
    };
    if let Some(contents) = resolv {
        out.push(PlanMount::File {
            dst: "/etc/resolv.conf".into(),
            contents,
        });
    }
    if let Some(name) = req.hostname.as_ref().or(host.hostname.as_ref()) {
        out.push(PlanMount::File {
            dst: "/etc/hostname".into(),
            contents: format!("{name}\n"),
        });
    }
    out
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// Normalises a container path: absolute, no empty or `.` components; `..` is refused
/// rather than resolved, since the image's symlinks decide what it would mean.
pub fn normalise_dst(p: &str) -> Result<String> {
    if !p.starts_with('/') {
        bail!("container path {p:?} must be absolute");
    }
    let mut parts = Vec::new();
    for c in p.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            bail!("container path {p:?} must not contain '..'");
        }
        parts.push(c);
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(home: &Path, cwd: &Path) -> Identity {
        Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            name: "u".into(),
            gecos: String::new(),
            passwd_home: home.into(),
            shell: "/bin/sh".into(),
            cwd: cwd.into(),
        }
    }

    fn dsts(p: &MountPlan) -> Vec<String> {
        p.mounts
            .iter()
            .map(|m| match m {
                PlanMount::Proc => "proc".into(),
                PlanMount::Sys => "sys".into(),
                PlanMount::Dev { minimal } => {
                    format!("dev{}", if *minimal { "-minimal" } else { "" })
                }
                PlanMount::Devpts => "devpts".into(),
                PlanMount::Tmpfs { dst, .. } => format!("tmpfs:{dst}"),
                PlanMount::Bind {
                    src,
                    dst,
                    read_only,
                    kind,
                } => {
                    format!(
                        "{kind:?}:{}->{dst}{}",
                        src.display(),
                        if *read_only { ":ro" } else { "" }
                    )
                }
                PlanMount::File { dst, .. } => format!("file:{dst}"),
                PlanMount::GpuDevice { name } => format!("device:{name}"),
            })
            .collect()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        conf: Conf,
    }

    impl Fixture {
        fn new() -> Self {
            // Not under /tmp: the /tmp bind would already show the current directory.
            let target = env!("CARGO_MANIFEST_DIR");
            let dir = tempfile::tempdir_in(target).unwrap();
            std::fs::create_dir_all(dir.path().join("home/u/work")).unwrap();
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            let mut conf = Conf::default();
            conf.bind_path = vec![conf::BindPathEntry::same("/etc/hosts")];
            Fixture { dir, conf }
        }
        fn home(&self) -> PathBuf {
            self.dir.path().join("home/u")
        }
        fn plan(&self, req: &MountRequest, cwd: &Path) -> Result<MountPlan> {
            let id = id(&self.home(), cwd);
            let host = HostFacts {
                id: &id,
                env_home: Some(self.home()),
                resolv_conf: Some("nameserver 127.0.0.1\n".into()),
                hostname: Some("node1".into()),
            };
            compute(&self.conf, req, &host, &ImageFiles::default())
        }
    }

    #[test]
    fn defaults_mount_like_the_reference() {
        let f = Fixture::new();
        let h = f.home().display().to_string();
        let p = f
            .plan(&MountRequest::default(), &f.home().join("work"))
            .unwrap();
        assert_eq!(
            dsts(&p),
            [
                "proc".to_string(),
                "sys".into(),
                "dev".into(),
                format!("Home:{h}->{h}"),
                "Tmp:/tmp->/tmp".into(),
                "Tmp:/var/tmp->/var/tmp".into(),
                "Conf:/etc/hosts->/etc/hosts".into(),
                "file:/etc/passwd".into(),
                "file:/etc/group".into(),
                "file:/etc/resolv.conf".into(),
                "file:/etc/hostname".into(),
            ]
        );
        assert_eq!(p.home, h);
        assert_eq!(
            p.cwd,
            format!("{h}/work"),
            "cwd under the bound home needs no bind of its own"
        );
    }

    #[test]
    fn current_directory_outside_home_is_bound() {
        let f = Fixture::new();
        let data = f.dir.path().join("data");
        let p = f.plan(&MountRequest::default(), &data).unwrap();
        let d = data.display().to_string();
        assert!(
            dsts(&p).contains(&format!("Cwd:{d}->{d}")),
            "{:?}",
            dsts(&p)
        );
        assert_eq!(p.cwd, d);
    }

    #[test]
    fn contain_uses_minimal_dev_and_empty_home_and_tmp() {
        let f = Fixture::new();
        let data = f.dir.path().join("data");
        let req = MountRequest {
            contain: true,
            ..Default::default()
        };
        let p = f.plan(&req, &data).unwrap();
        let h = f.home().display().to_string();
        let got = dsts(&p);
        assert_eq!(
            &got[..7],
            [
                "proc".to_string(),
                "sys".into(),
                "dev-minimal".into(),
                "devpts".into(),
                format!("tmpfs:{h}"),
                "tmpfs:/tmp".into(),
                "tmpfs:/var/tmp".into()
            ]
        );
        assert!(!got.iter().any(|m| m.starts_with("Cwd:")), "{got:?}");
        assert_eq!(p.cwd, h);
    }

    #[test]
    fn no_mount_and_no_home_remove_their_mounts() {
        let f = Fixture::new();
        let req = MountRequest {
            no_mount: vec![
                "proc".into(),
                "tmp".into(),
                "/etc/hosts".into(),
                "cwd".into(),
            ],
            no_home: true,
            ..Default::default()
        };
        let got = dsts(&f.plan(&req, &f.dir.path().join("data")).unwrap());
        assert_eq!(&got[..2], ["sys", "dev"]);
        assert!(
            got.iter().all(|m| !m.contains("Tmp:")
                && !m.contains("Home:")
                && !m.contains("Cwd:")
                && !m.contains("Conf:")),
            "{got:?}"
        );
    }

    #[test]
    fn conf_directives_switch_mounts_off() {
        let mut f = Fixture::new();
        f.conf.mount_proc = false;
        f.conf.mount_home = false;
        f.conf.mount_dev = MountDev::No;
        f.conf.config_passwd = false;
        let got = dsts(&f.plan(&MountRequest::default(), &f.home()).unwrap());
        assert_eq!(got[0], "sys");
        assert!(
            !got.iter()
                .any(|m| m.starts_with("dev") || m.starts_with("Home:") || m == "file:/etc/passwd"),
            "{got:?}"
        );
    }

    #[test]
    fn user_binds_and_custom_home() {
        let f = Fixture::new();
        let data = f.dir.path().join("data");
        let req = MountRequest {
            binds: vec![BindSpec {
                src: data.clone(),
                dst: "/mnt//d/".into(),
                read_only: true,
            }],
            home: Some(format!("{}:/home/me", data.display())),
            ..Default::default()
        };
        let p = f.plan(&req, &f.home()).unwrap();
        let d = data.display().to_string();
        let got = dsts(&p);
        assert!(got.contains(&format!("User:{d}->/home/me")), "{got:?}");
        assert!(got.contains(&format!("User:{d}->/mnt/d:ro")), "{got:?}");
        assert_eq!(p.home, "/home/me");
    }

    #[test]
    fn missing_bind_source_is_one_clear_error() {
        let f = Fixture::new();
        let req = MountRequest {
            binds: vec![BindSpec {
                src: "/no/such/dir".into(),
                dst: "/x".into(),
                read_only: false,
            }],
            ..Default::default()
        };
        let err = f.plan(&req, &f.home()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bind source \"/no/such/dir\" does not exist"
        );
    }

    #[test]
    fn without_a_mounted_home_the_process_starts_in_root() {
        let f = Fixture::new();
        let req = MountRequest {
            contain: true,
            no_home: true,
            ..Default::default()
        };
        assert_eq!(f.plan(&req, &f.dir.path().join("data")).unwrap().cwd, "/");
        let p = f.plan(&MountRequest::default(), Path::new("/")).unwrap();
        assert_eq!(p.cwd, "/");
        assert!(!dsts(&p).iter().any(|m| m.starts_with("Cwd:")));
    }

    #[test]
    fn dns_replaces_the_host_name_servers() {
        let f = Fixture::new();
        let req = MountRequest {
            dns: Some(vec!["10.0.0.1".into(), "fd00::1".into()]),
            ..Default::default()
        };
        let p = f.plan(&req, &f.home()).unwrap();
        let resolv = p.mounts.iter().find_map(|m| match m {
            PlanMount::File { dst, contents } if dst == "/etc/resolv.conf" => {
                Some(contents.clone())
            }
            _ => None,
        });
        assert_eq!(
            resolv.as_deref(),
            Some("nameserver 10.0.0.1\nnameserver fd00::1\n")
        );
    }

    #[test]
    fn scratch_is_a_tmpfs_or_a_workdir_directory() {
        let f = Fixture::new();
        let req = MountRequest {
            scratch: vec!["/scratch/a".into()],
            ..Default::default()
        };
        assert!(dsts(&f.plan(&req, &f.home()).unwrap()).contains(&"tmpfs:/scratch/a".to_string()));
        let w = f.dir.path().join("w");
        let req = MountRequest {
            scratch: vec!["/scratch/a".into()],
            workdir: Some(w.clone()),
            ..Default::default()
        };
        let got = dsts(&f.plan(&req, &f.home()).unwrap());
        let src = w.join("scratch/scratch/a").canonicalize().unwrap();
        assert!(
            got.contains(&format!("User:{}->/scratch/a", src.display())),
            "{got:?}"
        );
        let req = MountRequest {
            scratch: vec!["/".into()],
            ..Default::default()
        };
        assert!(f.plan(&req, &f.home()).is_err());
    }

    #[test]
    fn normalise_rejects_dotdot() {
        assert_eq!(normalise_dst("/a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(normalise_dst("/").unwrap(), "/");
        assert!(normalise_dst("/a/../b").is_err());
        assert!(normalise_dst("a").is_err());
    }
}
