//! Process state and identity: the sanitising first steps, who the caller is (from the
//! kernel and root-owned files only), and the privilege drop. Privilege is a type: what
//! needs it takes `&Root`, and `drop_all` consumes the `Root`, so no privileged step can
//! follow the drop. Nothing here asks `geteuid()` whether we are privileged (CVE-2020-5291).

use crate::error::{sys as syserr, Result, StarterError};
use crate::sys;
use crate::userns::IdMaps;
use caps::CapSet::{self, *};
use caps::CapsHashSet;
use conf::Accounts;
use nix::fcntl::{fcntl, FcntlArg::F_GETFD};
use nix::sys::prctl;
use nix::unistd::{getgroups, setfsgid, setfsuid, setgroups, setresgid, setresuid, Gid, Uid};
use starter::plan::{ensure, Caller};

/// Held while the process may still do privileged work. Not Clone, and the private field
/// keeps it from being built elsewhere; only `drop_all` ends it.
pub struct Root {
    pub caller: Caller,
    /// The container's ids (`target`, in its own user namespace's terms) and whether
    /// subordinate ranges are mapped, so that the namespace allows setgroups.
    pub maps: IdMaps,
    /// The process is in a user namespace it created: its capabilities count only there.
    userns: bool,
    /// What the container keeps (bit n = capability n): non-zero only for a root caller.
    caps: u64,
}

/// What is left after the drop: proof that `drop_all` ran.
pub struct User(());

include!(concat!(env!("OUT_DIR"), "/filters.rs"));

impl User {
    /// The last restriction before exec: the seccomp programs compiled by build.rs. Only a
    /// `User` can install them, so they come after no_new_privs and the drop, and bind the
    /// container too.
    pub fn confine(&self) -> Result<()> {
        sys::seccomp_install(TTY).map_err(syserr("cannot install the tty seccomp filter"))?;
        sys::seccomp_install(MOUNT_API).map_err(syserr("cannot install the mount seccomp filter"))
    }
}

/// First steps, before anything else is read: fixed signal dispositions, no environment,
/// no inherited fds except the plan on fd 3, not dumpable (setuid), no new privileges.
/// Returns whether the starter runs setuid (AT_SECURE).
pub fn sanitize() -> Result<bool> {
    let secure = sys::getauxval_secure();
    let [(ruid, euid, _), (rgid, ..)] = sys::getresids();
    ensure(!secure || euid == 0, StarterError::Refused("the starter is set-id but not setuid root"))?;
    // A closed one would be reused by our own opens.
    let stdio = (0..3).all(|fd| fcntl(fd, F_GETFD).is_ok());
    ensure(stdio, StarterError::Refused("standard input, output and error must be open"))?;
    sys::reset_process();
    sys::close_range_from(4).map_err(syserr("close_range"))?;
    if secure {
        // A dumpable privileged process can be ptraced by the caller (CVE-2016-8659).
        prctl::set_dumpable(false).map_err(syserr("PR_SET_DUMPABLE"))?;
        keep_only_needed_caps()?;
        ensure(setfsids(ruid, rgid), StarterError::DropFailed("setfsuid to the caller"))?;
    }
    // A plain user's user-namespace mode sets it once in its namespace: the parent that maps
    // subordinate ids must still be able to run the setuid newuidmap. Root needs no setuid.
    if secure || ruid == 0 {
        no_new_privs()?;
    }
    Ok(secure)
}

/// Whether the container is built privileged, with kernel mounts in the initial user
/// namespace: for the setuid starter, and for real root unless its Plan asks for a user
/// namespace (`--userns`, `--fakeroot`): root's containers see the host's ids and keep
/// root's powers, as the reference's do. Only root can choose, so the Plan decides nothing
/// for anyone else.
pub fn privileged(secure: bool, wants_userns: bool) -> bool {
    let [(ruid, euid, _), _] = sys::getresids();
    secure || (ruid == 0 && euid == 0 && !wants_userns)
}

/// No exec from here on can gain privileges (setuid bits, file capabilities); verified.
pub fn no_new_privs() -> Result<()> {
    prctl::set_no_new_privs().map_err(syserr("PR_SET_NO_NEW_PRIVS"))?;
    ensure(prctl::get_no_new_privs() == Ok(true), StarterError::DropFailed("no_new_privs"))
}

/// The host's passwd or group file: root-owned ones only for the setuid starter. Unreadable
/// reads as empty, so names resolve to nothing (a `limit container owners` then allows nobody).
pub fn accounts(secure: bool, file: &str) -> Accounts {
    let loaded = if secure { conf::load_accounts_trusted(file) } else { conf::load_accounts(file) };
    loaded.unwrap_or_default()
}

/// The caller from the kernel's real ids and the host's passwd file.
pub fn caller(privileged: bool, users: &Accounts) -> Result<Caller> {
    let [(uid, ..), (gid, ..)] = sys::getresids();
    let groups = getgroups().map_err(syserr("getgroups"))?.into_iter().map(Gid::as_raw).collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let home = users.by_id(uid).map_or_else(|| "/".into(), |a| a.home.clone());
    Ok(Caller { uid, gid, groups, home, cwd, setuid: privileged })
}

impl Root {
    pub fn new(maps: IdMaps, caller: Caller, caps: u64) -> Root {
        Root { userns: !caller.setuid, caps: if caller.uid == 0 { caps } else { 0 }, caller, maps }
    }
    /// After `unshare(CLONE_NEWUSER)` in setuid mode (fakeroot).
    pub fn entered_userns(&mut self) {
        self.userns = true;
    }
    /// The setuid parent of a container: it drops to the caller, whatever the container gets.
    pub fn into_supervisor(mut self) -> Root {
        (self.maps.target, self.maps.fakeroot, self.caps) = ((self.caller.uid, self.caller.gid), false, 0);
        self
    }
    /// Opens user-named paths with the caller's rights (setuid mode), or nothing to do.
    pub fn as_caller(&self) -> Result<()> {
        self.set_fs(self.caller.uid, self.caller.gid)
    }
    /// Back to root's filesystem rights for the starter's own objects (loop devices,
    /// mount points inside the private root).
    pub fn as_root(&self) -> Result<()> {
        self.set_fs(0, 0)
    }
    fn set_fs(&self, uid: u32, gid: u32) -> Result<()> {
        ensure(!self.caller.setuid || setfsids(uid, gid), StarterError::DropFailed("setfsuid"))
    }
}

/// Sets the filesystem uid and gid and returns whether the kernel took both (-1 only asks).
fn setfsids(uid: u32, gid: u32) -> bool {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    let _ = (setfsgid(g), setfsuid(u));
    setfsgid(Gid::from_raw(u32::MAX)) == g && setfsuid(Uid::from_raw(u32::MAX)) == u
}

/// Drops every privilege for good: bounding and ambient sets, groups, gid, uid, then the
/// remaining capability sets, each verified. A root caller's container keeps exactly the
/// set `validate` computed (`--keep-privs`, `--add-caps`, ...), everyone else's none.
/// Fakeroot keeps the bounding, effective and permitted sets of the user namespace the
/// process created (root there, as with `unshare -r`, so that package managers can chown);
/// they mean nothing outside it.
pub fn drop_all(root: Root) -> Result<User> {
    // In a user namespace without a subgid range setgroups is denied (we wrote "deny"): the
    // kernel keeps the caller's groups, shown as the overflow gid.
    let groups = if root.userns { root.maps.ranges.map(|_| &[][..]) } else { Some(&root.caller.groups[..]) };
    let keep = if root.maps.fakeroot && root.userns { None } else { Some(root.caps) };
    drop_ids(groups, root.maps.target, keep)?;
    Ok(User(()))
}

/// Drops the caller's process (FUSE daemon of the setuid starter) to the caller.
pub fn drop_to(c: &Caller) -> Result<()> {
    drop_ids(Some(&c.groups), (c.uid, c.gid), Some(0))
}

/// Sets `groups` (unless None), then gid and uid, and leaves exactly the capabilities `keep`
/// (bit n = capability n) that the bounding set still has (root's own may lack some), or
/// with None (fakeroot's namespace root) clears only ambient and inheritable. The bounding
/// set shrinks first, while CAP_SETPCAP is still held. Each step is read back.
fn drop_ids(groups: Option<&[u32]>, (uid, gid): (u32, u32), keep: Option<u64>) -> Result<()> {
    let supported = read_set(Bounding).ok_or(StarterError::DropFailed("bounding set"))?;
    let keep = keep.map(|k| supported.iter().copied().filter(|c| k & c.bitmask() != 0).collect::<CapsHashSet>());
    for &cap in keep.iter().flat_map(|k| supported.difference(k)) {
        caps::drop(None, Bounding, cap).map_err(|_| StarterError::DropFailed("bounding set"))?;
    }
    set_caps(&[Ambient], &CapsHashSet::new(), &[])?;
    if let Some(groups) = groups {
        setgroups(&groups.iter().map(|&g| Gid::from_raw(g)).collect::<Vec<_>>()).map_err(syserr("setgroups"))?;
    }
    let (u, g, root) = (Uid::from_raw(uid), Gid::from_raw(gid), Uid::from_raw(0));
    setresgid(g, g, g).map_err(syserr("setresgid"))?;
    setresuid(u, u, u).map_err(syserr("setresuid"))?;
    match &keep {
        Some(keep) => set_caps(&[Inheritable, Effective, Permitted, Ambient], keep, &[Bounding])?,
        None => set_caps(&[Inheritable], &CapsHashSet::new(), &[])?,
    }
    ensure(sys::getresids() == [(uid, uid, uid), (gid, gid, gid)], StarterError::DropFailed("ids"))?;
    ensure(uid == 0 || setresuid(root, root, root).is_err(), StarterError::DropFailed("setuid(0) still works"))
}

/// Makes each of `sets`, in this order, exactly `keep`, then reads them and `also` back.
/// Callers list inheritable first, while CAP_SETPCAP may still be effective, permitted only
/// after effective, and ambient (so that the sets survive execve) after both.
fn set_caps(sets: &[CapSet], keep: &CapsHashSet, also: &[CapSet]) -> Result<()> {
    for &set in sets {
        // caps::set of ambient probes and sets each capability; emptying a set is one call.
        let r = if keep.is_empty() { caps::clear(None, set) } else { caps::set(None, set, keep) };
        r.map_err(|_| StarterError::DropFailed("setting capabilities"))?;
    }
    for &set in sets.iter().chain(also) {
        ensure(read_set(set).is_some_and(|s| s == *keep), StarterError::DropFailed("capabilities"))?;
    }
    Ok(())
}

/// One set: capget for the thread's own; for bounding and ambient one prctl a capability
/// (`caps::read` first probes every capability's support, doubling ~40 calls a read).
fn read_set(set: CapSet) -> Option<CapsHashSet> {
    let each = caps::all().into_iter().filter(|&c| caps::has_cap(None, set, c).unwrap_or(false));
    matches!(set, Bounding | Ambient).then(|| each.collect()).or_else(|| caps::read(None, set).ok())
}

/// What the setuid starter needs until the drop: mounts and namespaces (SYS_ADMIN), the id
/// changes (SETUID, SETGID, SETPCAP for the bounding set), entering an instance's mount
/// namespace (setns wants SYS_CHROOT too), and, with fsuid 0 only, reading
/// the image's own directories to find mount points (DAC_*, FOWNER) and giving fakeroot's
/// writable layer to the caller (CHOWN). SYS_PTRACE stays only permitted: a join raises it
/// to check and enter an instance init, which our setuid drop left non-dumpable.
fn keep_only_needed_caps() -> Result<()> {
    use caps::Capability::*;
    let ids = [CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_SYS_CHROOT, CAP_DAC_OVERRIDE];
    let keep = CapsHashSet::from_iter(ids.into_iter().chain([CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_CHOWN]));
    let permitted = keep.iter().copied().chain([CAP_SYS_PTRACE]).collect();
    set_caps(&[Ambient, Inheritable], &CapsHashSet::new(), &[])?;
    set_caps(&[Effective], &keep, &[])?;
    set_caps(&[Permitted], &permitted, &[])
}
