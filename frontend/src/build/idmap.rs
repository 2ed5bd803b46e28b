//! Host-side work on a root that a fakeroot `%post` wrote with the caller's subordinate ids
//! (`apt-get` makes files owned by `_apt`, say): on the host those files belong to ids the
//! caller cannot act for, so reading them into the squashfs, copying them between stages
//! and deleting the build's temporary tree happen inside a user namespace with the same
//! mapping the starter uses (root = the caller, 1.. = the caller's /etc/subuid range),
//! entered with util-linux `unshare` through the setuid `newuidmap`/`newgidmap`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use conf::SubIdRange;

/// Why Landlock cannot confine a step run inside the mapping: no_new_privs, which Landlock
/// sets, would keep `unshare` from gaining its ids through the setuid `newuidmap`.
pub const UNCONFINED: &str = "runs in the fakeroot mapping, which needs the setuid newuidmap";

/// The caller's subordinate ranges, when a fakeroot build maps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdMap {
    pub uids: SubIdRange,
    pub gids: SubIdRange,
}

impl SubIdMap {
    /// The ranges the starter maps for this caller under fakeroot, as it looks them up;
    /// None for root, or when the caller has no usable range (root-mapped fakeroot).
    pub fn for_caller() -> Option<SubIdMap> {
        let uid = nix::unistd::getuid();
        if uid.is_root() {
            return None;
        }
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name);
        let lookup = |file: &str| {
            conf::load_subids(file)
                .ok()
                .and_then(|ids| ids.lookup(name.as_deref(), uid.as_raw()).ok())
        };
        let map = SubIdMap {
            uids: lookup(conf::SUBUID_FILE)?,
            gids: lookup(conf::SUBGID_FILE)?,
        };
        unshare_program().map(|_| map)
    }

    /// `program args...` run inside the mapped user namespace.
    pub fn command<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Command {
        self.unshare(&[], program, args)
    }

    /// As [`SubIdMap::command`], in new mount and PID namespaces of that user namespace:
    /// the mounts it makes vanish with it, and no process it starts outlives it.
    pub fn isolated_command<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Command {
        self.unshare(
            &["--mount", "--pid", "--fork", "--kill-child"],
            program,
            args,
        )
    }

    fn unshare<S: AsRef<OsStr>>(
        &self,
        namespaces: &[&str],
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Command {
        let mut cmd = Command::new(unshare_program().unwrap_or("unshare"));
        cmd.args([
            "--map-user=0".to_string(),
            "--map-group=0".to_string(),
            format!("--map-users={},1,{}", self.uids.start, self.uids.count),
            format!("--map-groups={},1,{}", self.gids.start, self.gids.count),
        ])
        .args(namespaces)
        .arg("--")
        .arg(program)
        .args(args);
        cmd
    }

    /// Removes a tree whose content may belong to subordinate ids.
    pub fn remove_tree(&self, root: &Path) -> bool {
        self.command(
            "rm",
            &[OsStr::new("-rf"), OsStr::new("--"), root.as_os_str()],
        )
        .status()
        .is_ok_and(|s| s.success())
            && !root.exists()
    }
}

fn unshare_program() -> Option<&'static str> {
    ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}
