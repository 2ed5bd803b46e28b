//! The typed form of apptainer.conf: one field per directive, its default, and the few derived
//! answers the starter and frontend need. Parsing lives in `parse.rs`; this file only says
//! what each directive is.

use std::path::{Component, Path, PathBuf};

use crate::paths;

/// `mount dev`: how much of the host's /dev the container gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountDev {
    /// Bind the host's /dev.
    Yes,
    /// No /dev at all.
    No,
    /// A fresh /dev with only null, zero, random, urandom and shm (as `--contain`).
    Minimal,
}

/// `enable overlay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableOverlay {
    /// Kernel overlayfs, else the FUSE image driver.
    Yes,
    /// No overlay for any purpose.
    No,
    /// Obsolete spelling of `Yes`; kept distinct so the file round-trips.
    Try,
    /// Always the FUSE image driver (fuse-overlayfs).
    Driver,
}

impl EnableOverlay {
    /// Whether any overlay may be used (`try` means the same as `yes`).
    pub fn allows_overlay(self) -> bool {
        self != EnableOverlay::No
    }

    /// Whether kernel overlayfs may be tried before the FUSE driver.
    pub fn allows_kernel_overlay(self) -> bool {
        matches!(self, EnableOverlay::Yes | EnableOverlay::Try)
    }
}

/// `enable underlay` (deprecated in the reference, still parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableUnderlay {
    /// Underlay when asked with `--underlay` or when overlay is disabled.
    Yes,
    /// Never.
    No,
    /// Underlay instead of overlay for creating bind points.
    Preferred,
}

/// `allow setuid-mount squashfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetuidMountSquashfs {
    /// The kernel may mount squashfs for unprivileged users in setuid mode.
    Yes,
    /// Always squashfuse.
    No,
    /// `Yes` when a `limit container ...` directive is set (ECL is not implemented here),
    /// else `No`.
    IfLimited,
}

/// `root default capabilities`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootDefaultCapabilities {
    /// Keep every capability (as `--keep-privs`).
    Full,
    /// Keep those listed for root in capability.json.
    File,
    /// Keep none (as `--no-privs`).
    No,
}

/// `memory fs type`: the filesystem of the session directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryFsType {
    Tmpfs,
    Ramfs,
}

/// One `bind path` entry, `source[:destination]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindPathEntry {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path in the container; the source when the entry has no `:`.
    pub destination: PathBuf,
}

impl BindPathEntry {
    /// An entry that binds `path` onto the same path in the container.
    pub fn same(path: &str) -> Self {
        BindPathEntry {
            source: path.into(),
            destination: path.into(),
        }
    }
}

/// The whole of apptainer.conf. `Conf::default()` is what Apptainer uses when no file is read
/// at all; a parsed file starts from it but with empty lists (see `parse.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conf {
    /// `allow setuid`: whether non-root users may use the setuid starter.
    pub allow_setuid: bool,
    /// `max loop devices`: highest number of /dev/loopN to use.
    pub max_loop_devices: u64,
    /// `allow ipc ns`.
    pub allow_ipc_ns: bool,
    /// `allow pid ns`.
    pub allow_pid_ns: bool,
    /// `allow user ns`.
    pub allow_user_ns: bool,
    /// `allow uts ns`.
    pub allow_uts_ns: bool,
    /// `config passwd`: add the caller to the container's /etc/passwd.
    pub config_passwd: bool,
    /// `config group`: add the caller's groups to the container's /etc/group.
    pub config_group: bool,
    /// `config resolv_conf`: bind the host's /etc/resolv.conf.
    pub config_resolv_conf: bool,
    /// `mount proc`.
    pub mount_proc: bool,
    /// `mount sys`.
    pub mount_sys: bool,
    /// `mount dev`.
    pub mount_dev: MountDev,
    /// `mount devpts`: a new devpts instance with a minimal /dev.
    pub mount_devpts: bool,
    /// `mount home`.
    pub mount_home: bool,
    /// `mount tmp`: bind /tmp and /var/tmp.
    pub mount_tmp: bool,
    /// `mount hostfs`: bind every host mount.
    pub mount_hostfs: bool,
    /// `bind path`, in file order.
    pub bind_path: Vec<BindPathEntry>,
    /// `user bind control`: whether users may ask for binds.
    pub user_bind_control: bool,
    /// `enable fusemount`.
    pub enable_fusemount: bool,
    /// `enable overlay`.
    pub enable_overlay: EnableOverlay,
    /// `enable underlay`.
    pub enable_underlay: EnableUnderlay,
    /// `mount slave`: propagate host mounts into the container.
    pub mount_slave: bool,
    /// `sessiondir max size`, in MiB.
    pub sessiondir_max_size: u64,
    /// `limit container owners`: user names.
    pub limit_container_owners: Vec<String>,
    /// `limit container groups`: group names.
    pub limit_container_groups: Vec<String>,
    /// `limit container paths`: absolute directory prefixes.
    pub limit_container_paths: Vec<PathBuf>,
    /// `allow container sif`.
    pub allow_container_sif: bool,
    /// `allow container encrypted`.
    pub allow_container_encrypted: bool,
    /// `allow container squashfs`.
    pub allow_container_squashfs: bool,
    /// `allow container extfs`.
    pub allow_container_extfs: bool,
    /// `allow container dir`.
    pub allow_container_dir: bool,
    /// `allow setuid-mount encrypted`.
    pub allow_setuid_mount_encrypted: bool,
    /// `allow setuid-mount squashfs`; see [`Conf::may_kernel_mount_squashfs_setuid`].
    pub allow_setuid_mount_squashfs: SetuidMountSquashfs,
    /// `allow setuid-mount extfs`.
    pub allow_setuid_mount_extfs: bool,
    /// `sync writable extfs`.
    pub sync_writable_extfs: bool,
    /// `allow net users`.
    pub allow_net_users: Vec<String>,
    /// `allow net groups`.
    pub allow_net_groups: Vec<String>,
    /// `allow net networks`.
    pub allow_net_networks: Vec<String>,
    /// `allow netns paths`: absolute paths of network namespaces users may join.
    pub allow_netns_paths: Vec<PathBuf>,
    /// `always use nv`.
    pub always_use_nv: bool,
    /// `use nvidia-container-cli`.
    pub use_nvidia_container_cli: bool,
    /// `always use rocm`.
    pub always_use_rocm: bool,
    /// `root default capabilities`.
    pub root_default_capabilities: RootDefaultCapabilities,
    /// `memory fs type`.
    pub memory_fs_type: MemoryFsType,
    /// `cni configuration path`; see [`Conf::cni_configuration_dir`] for the default.
    pub cni_configuration_path: Option<PathBuf>,
    /// `cni plugin path`; see [`Conf::cni_plugin_dir`] for the default.
    pub cni_plugin_path: Option<PathBuf>,
    /// `binary path`: colon-separated, may start with `$PATH:`.
    pub binary_path: String,
    /// `suidbinary path`: computed by the reference at run time, accepted for compatibility.
    pub suidbinary_path: Option<String>,
    /// `mksquashfs procs`: 0 means all CPUs.
    pub mksquashfs_procs: u64,
    /// `mksquashfs mem`, passed to mksquashfs `-mem` as written (e.g. `1G`).
    pub mksquashfs_mem: Option<String>,
    /// `shared loop devices`.
    pub shared_loop_devices: bool,
    /// `image driver`: name of a plugin image driver.
    pub image_driver: Option<String>,
    /// `download concurrency`.
    pub download_concurrency: u64,
    /// `download part size`, bytes.
    pub download_part_size: u64,
    /// `download buffer size`, bytes.
    pub download_buffer_size: u64,
    /// `systemd cgroups`.
    pub systemd_cgroups: bool,
    /// `apptheus communication socket path` (also read as `apptheus socket path`).
    pub apptheus_socket_path: PathBuf,
    /// `allow monitoring`.
    pub allow_monitoring: bool,
}

/// The reference's default for `binary path`.
pub const DEFAULT_BINARY_PATH: &str =
    "$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Default for Conf {
    fn default() -> Self {
        Conf {
            allow_setuid: true,
            max_loop_devices: 256,
            allow_ipc_ns: true,
            allow_pid_ns: true,
            allow_user_ns: true,
            allow_uts_ns: true,
            config_passwd: true,
            config_group: true,
            config_resolv_conf: true,
            mount_proc: true,
            mount_sys: true,
            mount_dev: MountDev::Yes,
            mount_devpts: true,
            mount_home: true,
            mount_tmp: true,
            mount_hostfs: false,
            bind_path: vec![
                BindPathEntry::same("/etc/localtime"),
                BindPathEntry::same("/etc/hosts"),
            ],
            user_bind_control: true,
            enable_fusemount: true,
            enable_overlay: EnableOverlay::Yes,
            enable_underlay: EnableUnderlay::Yes,
            mount_slave: true,
            sessiondir_max_size: 64,
            limit_container_owners: Vec::new(),
            limit_container_groups: Vec::new(),
            limit_container_paths: Vec::new(),
            allow_container_sif: true,
            allow_container_encrypted: true,
            allow_container_squashfs: true,
            allow_container_extfs: true,
            allow_container_dir: true,
            allow_setuid_mount_encrypted: true,
            allow_setuid_mount_squashfs: SetuidMountSquashfs::IfLimited,
            allow_setuid_mount_extfs: false,
            sync_writable_extfs: false,
            allow_net_users: Vec::new(),
            allow_net_groups: Vec::new(),
            allow_net_networks: Vec::new(),
            allow_netns_paths: Vec::new(),
            always_use_nv: false,
            use_nvidia_container_cli: false,
            always_use_rocm: false,
            root_default_capabilities: RootDefaultCapabilities::Full,
            memory_fs_type: MemoryFsType::Tmpfs,
            cni_configuration_path: None,
            cni_plugin_path: None,
            binary_path: DEFAULT_BINARY_PATH.to_owned(),
            suidbinary_path: None,
            mksquashfs_procs: 0,
            mksquashfs_mem: None,
            shared_loop_devices: false,
            image_driver: None,
            download_concurrency: 3,
            download_part_size: 5_242_880,
            download_buffer_size: 32_768,
            systemd_cgroups: true,
            apptheus_socket_path: PathBuf::from("/run/apptheus/gateway.sock"),
            allow_monitoring: false,
        }
    }
}

impl Conf {
    /// Whether any `limit container owners/groups/paths` directive is set.
    pub fn limits_containers(&self) -> bool {
        !(self.limit_container_owners.is_empty()
            && self.limit_container_groups.is_empty()
            && self.limit_container_paths.is_empty())
    }

    /// Whether the setuid starter may mount a SIF's or image's squashfs with the kernel for a
    /// non-root caller. When false it must use squashfuse, as in user-namespace mode.
    ///
    /// `iflimited` means yes only when the admin restricts which containers may run: then
    /// images are vetted, and a FUSE mounter running as the caller could be ptraced to
    /// subvert those limits. Without limits, any user-written squashfs would reach the
    /// kernel's parser as root, so FUSE is the safer default.
    pub fn may_kernel_mount_squashfs_setuid(&self) -> bool {
        match self.allow_setuid_mount_squashfs {
            SetuidMountSquashfs::Yes => true,
            SetuidMountSquashfs::No => false,
            SetuidMountSquashfs::IfLimited => self.limits_containers(),
        }
    }

    /// Directory of the CNI network configurations: the directive, else `$SYSCONFDIR/network`.
    pub fn cni_configuration_dir(&self) -> PathBuf {
        self.cni_configuration_path
            .clone()
            .unwrap_or_else(|| Path::new(paths::SYSCONFDIR).join("network"))
    }

    /// Directory of the CNI plugins: the directive, else `$LIBEXECDIR/cni`.
    pub fn cni_plugin_dir(&self) -> PathBuf {
        self.cni_plugin_path
            .clone()
            .unwrap_or_else(|| Path::new(paths::LIBEXECDIR).join("cni"))
    }

    /// Whether `image` lies under one of `limit container paths`, compared component by
    /// component (so `/data` does not admit `/database`, CVE-2026-48785), and without `..`
    /// (which could climb back out). True when no path limit is set.
    pub fn container_path_allowed(&self, image: &Path) -> bool {
        let escapes = image.components().any(|c| c == Component::ParentDir);
        self.limit_container_paths.is_empty()
            || (!escapes
                && self
                    .limit_container_paths
                    .iter()
                    .any(|p| image.starts_with(p)))
    }
}
