//! `--nv` and `--rocm`: the host's GPU driver libraries, binaries and device nodes, found
//! from the admin's `nvliblist.conf` / `rocmliblist.conf` and turned into read-only binds.
//! Libraries go to `/.singularity.d/libs` (32-bit ones to `libs32`), which the image's
//! `99-base.sh` puts on `LD_LIBRARY_PATH`; binaries keep their host path, as in the
//! reference. A host without the driver gets a warning and the container still runs.

pub mod ldcache;

use anyhow::{Context, Result};
use ldcache::Class;
use starter::plan::{BindKind, PlanMount};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Another list file instead of the installed one, and another `ld.so.cache` for
/// `ldconfig -C`. Both only change which host files the frontend asks to bind, and every
/// one of them becomes a user bind: the caller could request the same with `--bind`, and
/// the starter opens each source as the caller and applies `user bind control` to it. So
/// honouring them in this unprivileged program gives nobody anything new; they let tests
/// (and admins trying a list) use stand-in libraries without touching the host.
pub const LD_CACHE_ENV: &str = "APPTAINER_LDCACHE";

/// Where nvidia-persistenced listens; CUDA clients in the container talk to it.
const PERSISTENCED_SOCKET: &str = "/var/run/nvidia-persistenced/socket";

pub const LIBS_DIR: &str = "/.singularity.d/libs";
pub const LIBS32_DIR: &str = "/.singularity.d/libs32";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Rocm,
}

impl Vendor {
    pub fn flag(self) -> &'static str {
        match self {
            Vendor::Nvidia => "--nv",
            Vendor::Rocm => "--rocm",
        }
    }

    fn list_file(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvliblist.conf",
            Vendor::Rocm => "rocmliblist.conf",
        }
    }

    /// See [`LD_CACHE_ENV`] for why an override is acceptable here.
    fn list_env(self) -> &'static str {
        match self {
            Vendor::Nvidia => "APPTAINER_NVLIBLIST",
            Vendor::Rocm => "APPTAINER_ROCMLIBLIST",
        }
    }

    fn driver(self) -> &'static str {
        match self {
            Vendor::Nvidia => "NVIDIA",
            Vendor::Rocm => "ROCm",
        }
    }

    /// Whether a name directly under /dev belongs to this vendor's driver.
    fn is_device(self, name: &str) -> bool {
        match self {
            Vendor::Nvidia => name.starts_with("nvidia"),
            Vendor::Rocm => name == "kfd" || name == "dri",
        }
    }

    fn list_path(self) -> PathBuf {
        match std::env::var_os(self.list_env()).filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => Path::new(conf::paths::SYSCONFDIR).join(self.list_file()),
        }
    }
}

/// What was found on the host for one vendor.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Found {
    /// (host file, name in the container's libs directory)
    pub libs: Vec<(PathBuf, String)>,
    pub libs32: Vec<(PathBuf, String)>,
    /// (host file, path in the container)
    pub bins: Vec<(PathBuf, String)>,
    pub devices: Vec<PathBuf>,
    /// Driver sockets bound at their host path (NVIDIA's persistence daemon).
    pub ipcs: Vec<PathBuf>,
}

/// The names of a list file: one per line, `#` comments and blank lines ignored.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Reads the vendor's list and resolves it against the host.
pub fn discover(vendor: Vendor) -> Result<Found> {
    let list_path = vendor.list_path();
    let text = std::fs::read_to_string(&list_path)
        .with_context(|| format!("cannot read {}", list_path.display()))?;
    let names = parse_list(&text);
    let cache_file = std::env::var_os(LD_CACHE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let cache = ldcache::read(cache_file.as_deref())?;
    let own = ldcache::file_kind(Path::new("/proc/self/exe"))
        .context("cannot read this program's own ELF header")?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let mut found = resolve(&names, &cache, own, &dirs);
    found.devices = devices(vendor);
    if vendor == Vendor::Nvidia {
        found.ipcs = [PERSISTENCED_SOCKET]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
    }
    Ok(found)
}

/// Sorts list names into libraries (`*.so*`: absolute as is, bare names matched as a prefix
/// of the cache's names), and binaries (absolute as is, bare names on `PATH`).
pub fn resolve(
    names: &[String],
    cache: &[ldcache::Entry],
    own: (u8, u16),
    path: &[PathBuf],
) -> Found {
    let mut found = Found::default();
    let mut seen = HashSet::new();
    for name in names {
        if name.contains(".so") {
            let candidates: Vec<PathBuf> = if name.starts_with('/') {
                vec![PathBuf::from(name)]
            } else {
                cache
                    .iter()
                    .filter(|e| e.name.starts_with(name.as_str()))
                    .map(|e| e.path.clone())
                    .collect()
            };
            for lib in candidates {
                add_library(&mut found, &mut seen, &lib, own);
            }
        } else if let Some(bin) = find_binary(name, path) {
            let dst = bin.to_string_lossy().into_owned();
            if seen.insert(dst.clone()) {
                if let Ok(real) = std::fs::canonicalize(&bin) {
                    found.bins.push((real, dst));
                }
            }
        }
    }
    found
}

fn add_library(found: &mut Found, seen: &mut HashSet<String>, lib: &Path, own: (u8, u16)) {
    let Some(file_name) = lib.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let Some(kind) = ldcache::file_kind(lib) else {
        crate::debug!(
            "ignoring library {}: not a readable ELF file",
            lib.display()
        );
        return;
    };
    let Ok(real) = std::fs::canonicalize(lib) else {
        return;
    };
    let (list, dir) = match ldcache::classify(kind, own) {
        Class::Native => (&mut found.libs, LIBS_DIR),
        Class::Compat32 => (&mut found.libs32, LIBS32_DIR),
        Class::Foreign => return,
    };
    if seen.insert(format!("{dir}/{file_name}")) {
        list.push((real, file_name));
    }
}

/// An absolute executable as is, a bare name searched on `PATH`.
fn find_binary(name: &str, path: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.starts_with('/') {
        return executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    if name.contains('/') {
        return None;
    }
    path.iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// The vendor's nodes directly under /dev, sorted.
fn devices(vendor: Vendor) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| vendor.is_device(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The binds for what was found. `full_dev`: the host's whole /dev is bound into the
/// container (`mount dev = yes` without `--contain`), so the device nodes are already there
/// (or `mount dev = no`: there is no /dev to put them in). Otherwise, in a minimal /dev, each
/// node is bound by name; the starter takes only GPU device names.
pub fn binds(
    vendor: Vendor,
    found: &Found,
    user_bind_control: bool,
    full_dev: bool,
) -> Vec<PlanMount> {
    if found.libs.is_empty() && found.libs32.is_empty() && found.bins.is_empty() {
        crate::warning!(
            "could not find any {} libraries or binaries on this host: {} has no effect",
            vendor.driver(),
            vendor.flag()
        );
    }
    let devices: Vec<PlanMount> = match full_dev {
        true => Vec::new(),
        false => found
            .devices
            .iter()
            .filter_map(|d| d.file_name())
            .map(|n| PlanMount::GpuDevice {
                name: n.to_string_lossy().into_owned(),
            })
            .collect(),
    };
    if !user_bind_control {
        // The starter checks these binds as user binds (see `LD_CACHE_ENV`).
        crate::warning!(
            "ignoring {} library and binary binds: user bind control disabled by system administrator",
            vendor.driver()
        );
        return devices;
    }
    let bind = |src: &PathBuf, dst: String| PlanMount::Bind {
        src: src.clone(),
        dst,
        read_only: true,
        kind: BindKind::User,
    };
    let libs = found
        .libs
        .iter()
        .map(|(s, n)| bind(s, format!("{LIBS_DIR}/{n}")));
    let libs32 = found
        .libs32
        .iter()
        .map(|(s, n)| bind(s, format!("{LIBS32_DIR}/{n}")));
    let bins = found.bins.iter().map(|(s, d)| bind(s, d.clone()));
    let ipcs = found.ipcs.iter().filter_map(|p| {
        let real = std::fs::canonicalize(p).ok()?;
        Some(bind(&real, p.to_string_lossy().into_owned()))
    });
    libs.chain(libs32)
        .chain(bins)
        .chain(ipcs)
        .chain(devices)
        .collect()
}

/// The GPU binds for a launch: `--nv`/`--rocm`, or `always use nv/rocm` of apptainer.conf
/// unless `--no-nv`/`--no-rocm`. A failed discovery (no list file, no ldconfig) is a
/// warning: the container still runs.
pub fn plan_mounts(conf: &conf::Conf, opts: &crate::launch::LaunchOptions) -> Vec<PlanMount> {
    let full_dev = conf.mount_dev == conf::MountDev::No
        || (!opts.contain && conf.mount_dev == conf::MountDev::Yes);
    let mut mounts = Vec::new();
    for (vendor, on) in [
        (
            Vendor::Nvidia,
            opts.nv || (conf.always_use_nv && !opts.no_nv),
        ),
        (
            Vendor::Rocm,
            opts.rocm || (conf.always_use_rocm && !opts.no_rocm),
        ),
    ] {
        if !on {
            continue;
        }
        match discover(vendor) {
            Ok(found) => {
                crate::debug!("{} found: {found:?}", vendor.flag());
                mounts.extend(binds(vendor, &found, conf.user_bind_control, full_dev));
            }
            Err(e) => crate::warning!("{}: {e:#}", vendor.flag()),
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_ignore_comments_and_blank_lines() {
        let names = parse_list("# binaries\nnvidia-smi\n\n  libcuda.so  # driver\n#libfoo.so\n");
        assert_eq!(names, ["nvidia-smi", "libcuda.so"]);
    }

    #[test]
    fn bare_names_match_the_cache_by_prefix_and_binaries_are_found_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let own_exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        let lib = dir.path().join("libstandin.so.1");
        std::fs::copy(&own_exe, &lib).unwrap();
        let text = dir.path().join("libtext.so.1");
        std::fs::write(&text, "not elf").unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        std::fs::copy(&own_exe, bin_dir.join("standin-smi")).unwrap();
        let cache = vec![
            ldcache::Entry {
                name: "libstandin.so.1".into(),
                path: lib.clone(),
            },
            ldcache::Entry {
                name: "libtext.so.1".into(),
                path: text,
            },
            ldcache::Entry {
                name: "libother.so.1".into(),
                path: lib.clone(),
            },
        ];
        let own = ldcache::file_kind(&own_exe).unwrap();
        let names: Vec<String> = ["libstandin.so", "libtext.so", "standin-smi", "missing-smi"]
            .map(String::from)
            .into();
        let found = resolve(&names, &cache, own, std::slice::from_ref(&bin_dir));
        assert_eq!(
            found.libs,
            [(
                std::fs::canonicalize(&lib).unwrap(),
                "libstandin.so.1".to_string()
            )]
        );
        assert!(found.libs32.is_empty());
        let smi = bin_dir.join("standin-smi");
        assert_eq!(
            found.bins,
            [(
                std::fs::canonicalize(&smi).unwrap(),
                smi.to_string_lossy().into_owned()
            )]
        );
        let mounts = binds(Vendor::Nvidia, &found, true, true);
        assert_eq!(mounts.len(), 2);
        assert!(
            matches!(&mounts[0], PlanMount::Bind { dst, read_only: true, .. } if dst == "/.singularity.d/libs/libstandin.so.1")
        );
        assert!(binds(Vendor::Nvidia, &found, false, true).is_empty());
        let mut with_socket = found.clone();
        let socket = dir.path().join("socket");
        std::fs::write(&socket, "").unwrap();
        with_socket.ipcs = vec![socket.clone()];
        let mounts = binds(Vendor::Nvidia, &with_socket, true, true);
        assert!(
            matches!(mounts.last(), Some(PlanMount::Bind { dst, .. }) if *dst == socket.to_string_lossy())
        );
    }
}
