//! The launch request (`Plan`) the frontend sends on fd 3, and `validate`, the only way to a
//! `ValidatedPlan`. The Plan is hostile input: nothing in it is trusted for ids, loop offsets,
//! mount flags or filesystem types. Those come from the kernel, apptainer.conf (`Policy`) and
//! the image the starter opens itself. Adding a `PlanMount` variant needs a security review.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Wire format version; bump on any incompatible change.
pub const PLAN_VERSION: u32 = 1;
/// Hard cap on the Plan's JSON size, enforced by the reader before decoding.
pub const MAX_PLAN_BYTES: usize = 1 << 20;
const MAX_MOUNTS: usize = 256;
const MAX_FILE_BYTES: usize = 256 * 1024;
const MAX_PATH_BYTES: usize = 4096;
/// Destinations a generated file may be written to (closed list: anything else is a user bind).
const FILE_DESTINATIONS: [&str; 4] = ["/etc/passwd", "/etc/group", "/etc/hostname", "/etc/resolv.conf"];

/// What the frontend asks for. Every field is checked by `validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub version: u32,
    pub image: PlanImage,
    pub namespaces: Namespaces,
    pub hostname: Option<String>,
    /// Applied in order, after the image root is in place.
    pub mounts: Vec<PlanMount>,
    /// Overlay with a tmpfs upper layer (`--writable-tmpfs`), sized by `sessiondir max size`.
    pub writable_tmpfs: bool,
    /// Map the caller to uid/gid 0 in a user namespace (and the caller's /etc/subuid and
    /// /etc/subgid ranges from 1 up, when it has them). Needs `namespaces.user`.
    pub fakeroot: bool,
    /// `--keep-privs`, `--no-privs`, `--add-caps`, `--drop-caps` (see `container_caps`).
    #[serde(default)]
    pub capabilities: CapRequest,
    /// With a PID namespace: the starter stays as PID 1 (reaping orphans, forwarding
    /// signals) and the container process is its child, as the reference's `appinit`.
    #[serde(default)]
    pub init: bool,
    /// `instance start`: the starter runs in a session of its own and the container process
    /// is the child of an init (`appinit`) that stays up after it, until a stop signal.
    #[serde(default)]
    pub instance: bool,
    /// `exec instance://`: enter the namespaces of the instance whose init has this pid
    /// instead of building a container. The starter verifies the process itself (join.rs).
    #[serde(default)]
    pub join: Option<u32>,
    /// `--overlay` layers over the image, the first on top. User-namespace mode only.
    #[serde(default)]
    pub overlays: Vec<PlanOverlay>,
    pub process: Process,
}

/// A directory, squashfs or ext3 image (the starter tells which from the file it opens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOverlay {
    pub path: PathBuf,
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanImage {
    /// Host path as the user typed it (made absolute by the frontend); opened as the user.
    pub path: PathBuf,
    pub kind: ImageKind,
    pub writable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    Sif,
    Squashfs,
    Sandbox,
}

/// Namespaces to create besides the mount namespace (always created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    pub user: bool,
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub net: bool,
}

/// Why a bind is requested; decides which apptainer.conf rule governs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindKind {
    /// `--bind`/`--mount`/`APPTAINER_BIND`: needs `user bind control = yes`.
    User,
    /// The caller's home directory: needs `mount home = yes`; src must be the passwd home.
    Home,
    /// /tmp or /var/tmp: needs `mount tmp = yes`.
    Tmp,
    /// The caller's current directory: src must be the starter's own cwd.
    Cwd,
    /// A `bind path` entry of apptainer.conf: src and dst must match one.
    Conf,
}

/// One mount inside the container. Every mount gets nosuid,nodev regardless of the request.
/// `P` is the type of container paths: `String` on the wire, `ContainerPath` once checked.
/// `Bind` is a recursive bind of a host path the caller can open; `File` a small generated
/// file (passwd, group, hostname, resolv.conf) bound read-only; `GpuDevice` a host GPU
/// device node (nvidia*, kfd) or /dev/dri, for `--nv`/`--rocm` in a minimal /dev.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PlanMount<P = String> {
    Proc,
    Sys,
    Dev { minimal: bool },
    Devpts,
    Tmpfs { dst: P, size_mib: u32 },
    Bind { src: PathBuf, dst: P, read_only: bool, kind: BindKind },
    File { dst: P, contents: String },
    GpuDevice { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// argv[0] is an absolute path inside the container, or a bare name searched in the
    /// `PATH` of `env` (as `execvp` does, with the container's PATH, not the starter's).
    pub argv: Vec<String>,
    /// The complete environment (`NAME=value`); the starter's own is never passed on.
    pub env: Vec<String>,
    pub cwd: String,
    /// The container process's umask; the starter's own 022 when absent.
    #[serde(default)]
    pub umask: Option<u32>,
}

/// What the caller asks for the container's capabilities; names as `cap_name` gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapRequest {
    pub keep_privs: bool,
    pub no_privs: bool,
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// The apptainer.conf rules `validate` applies: the conf itself, with the names of `limit
/// container owners/groups` resolved to ids (empty: no limit; only unknown names: nobody).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub conf: conf::Conf,
    pub limit_owners: Vec<u32>,
    pub limit_groups: Vec<u32>,
}

/// `mount dev` and `allow setuid-mount squashfs`, as apptainer.conf spells them.
pub use conf::{MountDev as DevPolicy, SetuidMountSquashfs as SetuidMount};

/// The caller as the kernel and root-owned files describe it, never as the Plan does.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Home directory from the host's /etc/passwd.
    pub home: PathBuf,
    /// The starter's working directory when it started (inherited from the caller).
    pub cwd: PathBuf,
    /// Privileged, in the initial user namespace: the setuid starter (AT_SECURE), or real
    /// root without `--userns`/`--fakeroot`.
    pub setuid: bool,
}

/// A path inside the container: absolute, normalised, no `.`/`..`, no NUL, bounded length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath(String);

impl ContainerPath {
    pub fn parse(s: &str) -> Result<Self, PlanError> {
        let bad = |why| PlanError::Invalid { what: "container path", value: s.into(), why };
        ensure(s.starts_with('/'), bad("is not absolute"))?;
        ensure(s.len() <= MAX_PATH_BYTES && !s.contains('\0'), bad("is too long or contains NUL"))?;
        let normal = s == "/" || !s[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..");
        ensure(normal, bad("is not normalised (empty, '.' or '..' component)"))?;
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The path relative to the container root, for `openat2(RESOLVE_IN_ROOT)`.
    pub fn relative(&self) -> &str {
        Some(&self.0[1..]).filter(|r| !r.is_empty()).unwrap_or(".")
    }
    fn is_within(&self, top: &str) -> bool {
        self.0 == top || self.0.strip_prefix(top).is_some_and(|r| r.starts_with('/'))
    }
}

/// A checked mount, ready for the privileged side.
pub type Mount = PlanMount<ContainerPath>;

/// Proof that a Plan passed every rule for this caller: it reads as the Plan, whose mounts
/// were moved into their checked form. Its fields are private and it has no Deserialize,
/// Default, Clone or DerefMut: `validate` is the only constructor.
#[derive(Debug)]
pub struct ValidatedPlan {
    plan: Plan,
    mounts: Vec<Mount>,
    cwd: ContainerPath,
    caps: u64,
}

impl ValidatedPlan {
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }
    pub fn cwd(&self) -> &ContainerPath {
        &self.cwd
    }
    /// The container process's capabilities, bit n for capability n.
    pub fn caps(&self) -> u64 {
        self.caps
    }
}

impl std::ops::Deref for ValidatedPlan {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

/// Why a Plan was refused. Messages name the offending value and the rule.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("plan is larger than {MAX_PLAN_BYTES} bytes")]
    TooLarge,
    #[error("malformed plan: {0}")]
    Malformed(String),
    #[error("plan version {0} is not supported (expected {PLAN_VERSION})")]
    Version(u32),
    /// A value that breaks a rule of its own: `what` names the kind, `why` the rule.
    #[error("{what} {value:?} {why}")]
    Invalid { what: &'static str, value: String, why: &'static str },
    #[error("{0} is not allowed by apptainer.conf ({1})")]
    Denied(String, &'static str),
    #[error("too many mounts ({0}, at most {MAX_MOUNTS})")]
    TooManyMounts(usize),
    #[error("process: {0}")]
    BadProcess(&'static str),
    #[error("image {path:?} is not allowed: {why}")]
    ImageRefused { path: PathBuf, why: &'static str },
}

/// `Err(err)` unless `ok`: each rule reads as the condition it requires.
pub fn ensure<E>(ok: bool, err: E) -> Result<(), E> {
    ok.then_some(()).ok_or(err)
}

/// Decodes a Plan from at most `MAX_PLAN_BYTES` of JSON.
pub fn decode(bytes: &[u8]) -> Result<Plan, PlanError> {
    ensure(bytes.len() <= MAX_PLAN_BYTES, PlanError::TooLarge)?;
    // serde_json's own messages quote no file contents, only the JSON the caller wrote.
    serde_json::from_slice(bytes).map_err(|e| PlanError::Malformed(e.to_string()))
}

/// Checks every rule of `policy` for `caller`; the result is the only input of the privileged side.
pub fn validate(mut plan: Plan, policy: &Policy, caller: &Caller) -> Result<ValidatedPlan, PlanError> {
    ensure(plan.version == PLAN_VERSION, PlanError::Version(plan.version))?;
    check_image(&plan.image, plan.writable_tmpfs, policy, caller)?;
    check_overlays(&plan, policy, caller)?;
    check_namespaces(plan.namespaces, plan.fakeroot, policy, caller)?;
    plan.hostname.as_deref().map_or(Ok(()), |h| check_hostname(h, plan.namespaces))?;
    ensure(plan.mounts.len() <= MAX_MOUNTS, PlanError::TooManyMounts(plan.mounts.len()))?;
    let mounts = std::mem::take(&mut plan.mounts);
    let mounts = mounts.into_iter().map(|m| check_mount(m, policy, caller)).collect::<Result<Vec<_>, _>>()?;
    let cwd = check_process(&plan.process)?;
    let caps = container_caps(&plan.capabilities, policy, caller)?;
    Ok(ValidatedPlan { plan, mounts, cwd, caps })
}

fn check_image(img: &PlanImage, writable_tmpfs: bool, policy: &Policy, caller: &Caller) -> Result<(), PlanError> {
    let refuse = |why| PlanError::ImageRefused { path: img.path.clone(), why };
    check_host_path(&img.path)?;
    let allowed = match img.kind {
        ImageKind::Sif => policy.conf.allow_container_sif,
        ImageKind::Squashfs => policy.conf.allow_container_squashfs,
        ImageKind::Sandbox => policy.conf.allow_container_dir,
    };
    ensure(allowed, refuse("this image type is disabled by 'allow container'"))?;
    let squashfs_rw = img.writable && img.kind == ImageKind::Squashfs;
    ensure(!squashfs_rw, refuse("only sandboxes and SIF overlays can be writable"))?;
    let root_sandbox = caller.uid == 0 && img.kind == ImageKind::Sandbox;
    ensure(!img.writable || !caller.setuid || root_sandbox, refuse("writable images need user-namespace mode"))?;
    let overlay = policy.conf.enable_overlay.allows_kernel_overlay();
    ensure(!writable_tmpfs || overlay, PlanError::Denied("writable tmpfs".into(), "enable overlay"))?;
    ensure(policy.conf.container_path_allowed(&img.path), refuse("outside 'limit container paths'"))
}

/// One writable layer at most (overlay, SIF partition, tmpfs), as `enable overlay` allows,
/// in user-namespace mode only: the kernel never parses an ext3 image the caller can write.
fn check_overlays(plan: &Plan, policy: &Policy, caller: &Caller) -> Result<(), PlanError> {
    let (img, os) = (&plan.image, &plan.overlays);
    if os.is_empty() && !(img.writable && img.kind == ImageKind::Sif) {
        return Ok(());
    }
    let refuse = |why| PlanError::ImageRefused { path: img.path.clone(), why };
    let writable =
        os.iter().filter(|o| o.writable).count() + usize::from(img.writable) + usize::from(plan.writable_tmpfs);
    ensure(policy.conf.enable_overlay.allows_overlay(), PlanError::Denied("overlay".into(), "enable overlay"))?;
    ensure(!caller.setuid, refuse("overlays need user-namespace mode"))?;
    let ok = writable <= 1 && os.len() <= 16 && !(img.writable && img.kind == ImageKind::Sandbox);
    ensure(ok, refuse("one writable layer at most (overlay, --writable, --writable-tmpfs), 16 overlays at most"))?;
    os.iter().try_for_each(|o| check_host_path(&o.path))
}

impl Policy {
    /// The rules of `c`, with owner/group names resolved in `users` and `groups`.
    pub fn resolved(c: &conf::Conf, users: &conf::Accounts, groups: &conf::Accounts) -> Policy {
        let (limit_owners, limit_groups) =
            (users.ids_of(&c.limit_container_owners), groups.ids_of(&c.limit_container_groups));
        Policy { conf: c.clone(), limit_owners, limit_groups }
    }

    /// The checks that need the opened image: its owner and group from `fstat`, and the
    /// path the kernel reports for the fd, so a symlink or rename cannot dodge the limits.
    pub fn check_opened_image(&self, real_path: &Path, uid: u32, gid: u32) -> Result<(), PlanError> {
        let refuse = |why| PlanError::ImageRefused { path: real_path.to_owned(), why };
        let limited = |ids: &[u32], id| ids.is_empty() || ids.contains(&id);
        ensure(self.conf.container_path_allowed(real_path), refuse("outside 'limit container paths'"))?;
        ensure(limited(&self.limit_owners, uid), refuse("owner not in 'limit container owners'"))?;
        ensure(limited(&self.limit_groups, gid), refuse("group not in 'limit container groups'"))
    }
}

fn check_namespaces(ns: Namespaces, fakeroot: bool, policy: &Policy, caller: &Caller) -> Result<(), PlanError> {
    let rules = [
        (ns.user, policy.conf.allow_user_ns, "allow user ns"),
        (ns.pid, policy.conf.allow_pid_ns, "allow pid ns"),
        (ns.ipc, policy.conf.allow_ipc_ns, "allow ipc ns"),
        (ns.uts, policy.conf.allow_uts_ns, "allow uts ns"),
        (ns.net, true, "allow net ns"),
    ];
    if let Some((_, _, rule)) = rules.iter().find(|(want, ok, _)| *want && !ok) {
        return Err(PlanError::Denied(format!("namespace '{}'", &rule[6..rule.len() - 3]), rule));
    }
    // The setuid starter makes a user namespace only for fakeroot, after the root is built.
    let denied = |what: &str, rule| PlanError::Denied(what.into(), rule);
    let what = "a user namespace without fakeroot, or fakeroot without one, from the setuid starter";
    ensure(!caller.setuid || ns.user == fakeroot, denied(what, "use user-namespace mode"))?;
    ensure(caller.setuid || ns.user, denied("running without a user namespace", "the starter is not setuid"))?;
    // As in the reference, `allow setuid` governs plain users only.
    let allowed = !caller.setuid || caller.uid == 0 || policy.conf.allow_setuid;
    ensure(allowed, denied("the setuid starter", "allow setuid"))
}

fn check_hostname(h: &str, ns: Namespaces) -> Result<(), PlanError> {
    let ok = !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ensure(ok, PlanError::Invalid { what: "hostname", value: h.into(), why: "is invalid" })?;
    ensure(ns.uts, PlanError::Denied("setting the hostname without a UTS namespace".into(), "allow uts ns"))
}

fn check_host_path(p: &Path) -> Result<(), PlanError> {
    use std::os::unix::ffi::OsStrExt;
    let (b, why) = (p.as_os_str().as_bytes(), "must be absolute and contain no NUL");
    let ok = p.is_absolute() && !b.contains(&0) && b.len() <= MAX_PATH_BYTES;
    ensure(ok, PlanError::Invalid { what: "host path", value: p.to_string_lossy().into(), why })
}

fn check_mount(m: PlanMount, policy: &Policy, caller: &Caller) -> Result<Mount, PlanError> {
    let deny = |what: &str, rule| Err(PlanError::Denied(what.to_owned(), rule));
    Ok(match m {
        PlanMount::Proc if !policy.conf.mount_proc => return deny("mounting /proc", "mount proc"),
        PlanMount::Sys if !policy.conf.mount_sys => return deny("mounting /sys", "mount sys"),
        PlanMount::Devpts if !policy.conf.mount_devpts => return deny("mounting /dev/pts", "mount devpts"),
        PlanMount::Proc => Mount::Proc,
        PlanMount::Sys => Mount::Sys,
        PlanMount::Devpts => Mount::Devpts,
        PlanMount::Dev { minimal } => match (policy.conf.mount_dev, minimal) {
            (DevPolicy::No, _) | (DevPolicy::Minimal, false) => return deny("mounting the host /dev", "mount dev"),
            _ => Mount::Dev { minimal },
        },
        PlanMount::Tmpfs { size_mib, .. } if size_mib == 0 || u64::from(size_mib) > policy.conf.sessiondir_max_size => {
            return deny(&format!("tmpfs of {size_mib} MiB"), "sessiondir max size");
        }
        PlanMount::Tmpfs { dst, size_mib } => Mount::Tmpfs { dst: check_destination(&dst)?, size_mib },
        PlanMount::Bind { src, dst, read_only, kind } => {
            check_host_path(&src)?;
            let dst = check_destination(&dst)?;
            check_bind_rule(&src, &dst, kind, policy, caller)?;
            Mount::Bind { src, dst, read_only, kind }
        }
        PlanMount::File { dst, contents } => {
            let ok = FILE_DESTINATIONS.contains(&dst.as_str()) && contents.len() <= MAX_FILE_BYTES;
            let why = "is not allowed or too large";
            ensure(ok, PlanError::Invalid { what: "generated file for", value: dst.clone(), why })?;
            Mount::File { dst: ContainerPath::parse(&dst)?, contents }
        }
        PlanMount::GpuDevice { name } => {
            let nv =
                name.strip_prefix("nvidia").is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            let ok = (nv || name == "kfd" || name == "dri") && policy.conf.mount_dev != DevPolicy::No;
            ensure(ok, PlanError::Denied(format!("binding the device {name:?}"), "mount dev, GPU devices only"))?;
            Mount::GpuDevice { name }
        }
    })
}

/// Binds and tmpfs may not cover the container root or the kernel filesystems.
fn check_destination(dst: &str) -> Result<ContainerPath, PlanError> {
    let p = ContainerPath::parse(dst)?;
    let reserved = p.as_str() == "/" || p.is_within("/proc") || p.is_within("/sys") || p.as_str() == "/dev";
    let why = "is reserved for the runtime";
    ensure(!reserved, PlanError::Invalid { what: "bind destination", value: dst.into(), why }).map(|()| p)
}

fn check_bind_rule(
    src: &Path, dst: &ContainerPath, kind: BindKind, policy: &Policy, caller: &Caller,
) -> Result<(), PlanError> {
    let (c, tmp) = (&policy.conf, src == Path::new("/tmp") || src == Path::new("/var/tmp"));
    let listed = c.bind_path.iter().any(|b| b.source == src && b.destination.as_os_str() == dst.as_str());
    let (ok, rule) = match kind {
        BindKind::User => (c.user_bind_control, "user bind control"),
        BindKind::Home if !c.mount_home => (false, "mount home"),
        BindKind::Home => (src == caller.home, "not the caller's home directory"),
        BindKind::Tmp if !c.mount_tmp => (false, "mount tmp"),
        BindKind::Tmp => (tmp, "mount tmp covers only /tmp and /var/tmp"),
        BindKind::Cwd => (src == caller.cwd, "not the current directory"),
        BindKind::Conf => (listed, "no such 'bind path' entry"),
    };
    ensure(ok, PlanError::Denied(format!("bind {src:?} to {:?}", dst.as_str()), rule))
}

/// Root gets `root default capabilities` (`file` grants none: capability.json is not read),
/// all of them with `keep_privs`, none with `no_privs`; then `add`, less `drop`. Any other
/// caller gets none, and asking to keep or add one is refused (the reference's capability
/// database for users is not implemented).
fn container_caps(req: &CapRequest, policy: &Policy, caller: &Caller) -> Result<u64, PlanError> {
    let all = caps::all().iter().fold(0, |m, c| m | c.bitmask());
    // `CAP_ALL` or one capability by its canonical name.
    let bit = |n: &str| if n == "CAP_ALL" { Ok(all) } else { n.parse::<caps::Capability>().map(|c| c.bitmask()) };
    let unknown = |n: &String| PlanError::Invalid { what: "capability", value: n.clone(), why: "is unknown" };
    let bits = |names: &[String]| names.iter().try_fold(0, |m, n| bit(n).map(|b| m | b).map_err(|_| unknown(n)));
    let (add, drop) = (bits(&req.add)?, bits(&req.drop)?);
    if caller.uid != 0 {
        let denied = PlanError::Denied("keeping or adding capabilities".into(), "root only");
        return ensure(!req.keep_privs && add == 0, denied).map(|()| 0);
    }
    let full = policy.conf.root_default_capabilities == conf::RootDefaultCapabilities::Full;
    let base = if !req.no_privs && (req.keep_privs || full) { all } else { 0 };
    Ok((base | add) & !drop)
}

fn check_process(p: &Process) -> Result<ContainerPath, PlanError> {
    let first = p.argv.first().ok_or(PlanError::BadProcess("argv is empty"))?;
    if first.contains('/') || first.is_empty() || first == "." || first == ".." {
        ContainerPath::parse(first)?;
    }
    ensure(p.umask.is_none_or(|m| m <= 0o777), PlanError::BadProcess("umask above 0777"))?;
    ensure(!p.argv.iter().chain(&p.env).any(|s| s.contains('\0')), PlanError::BadProcess("argv or env contains NUL"))?;
    ensure(p.env.iter().all(|e| e.find('=').is_some_and(|i| i > 0)), PlanError::BadProcess("env entry without NAME="))?;
    ContainerPath::parse(&p.cwd)
}

#[cfg(test)]
mod tests;
