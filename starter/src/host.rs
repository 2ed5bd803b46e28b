//! The host's root-owned account files, read directly (no NSS: nothing loads code while
//! privileged), and the translation of apptainer.conf into the `Policy` that `validate` checks.

use crate::plan::{Namespaces, Policy};
use std::path::PathBuf;

/// Bounded read of /etc/passwd or /etc/group; a missing file reads as empty.
fn read_db(path: &str) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(16 << 20).read_to_string(&mut s);
    }
    s
}

/// `(name, id, home)` of each well-formed entry (`name:x:id:gid:gecos:home:shell`).
fn entries(db: &str) -> impl Iterator<Item = (&str, u32, &str)> {
    db.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        Some((*f.first()?, f.get(2)?.parse().ok()?, f.get(5).copied().unwrap_or("")))
    })
}

/// Home directory of `uid` in the host /etc/passwd.
pub fn home_of(uid: u32) -> Option<PathBuf> {
    entries(&read_db("/etc/passwd")).find(|e| e.1 == uid).map(|e| PathBuf::from(e.2))
}

fn ids_of(names: &[String], db: &str) -> Vec<u32> {
    let db = read_db(db);
    // An unknown name maps to no id, so it allows nothing rather than being ignored.
    let ids: Vec<u32> = names.iter().filter_map(|n| entries(&db).find(|e| e.0 == n.as_str()).map(|e| e.1)).collect();
    if ids.is_empty() && !names.is_empty() {
        vec![u32::MAX]
    } else {
        ids
    }
}

impl Policy {
    /// The rules of `conf` that the starter enforces, with owner/group names resolved.
    pub fn from_conf(c: &conf::Conf) -> Policy {
        Policy {
            allow_setuid: c.allow_setuid,
            allow_ns: Namespaces {
                user: c.allow_user_ns,
                pid: c.allow_pid_ns,
                ipc: c.allow_ipc_ns,
                uts: c.allow_uts_ns,
                net: true,
            },
            user_bind_control: c.user_bind_control,
            mount_proc: c.mount_proc,
            mount_sys: c.mount_sys,
            mount_dev: c.mount_dev,
            mount_devpts: c.mount_devpts,
            mount_home: c.mount_home,
            mount_tmp: c.mount_tmp,
            bind_path: c.bind_path.iter().map(|b| (b.source.clone(), b.destination.clone())).collect(),
            allow_sif: c.allow_container_sif,
            allow_squashfs: c.allow_container_squashfs,
            allow_dir: c.allow_container_dir,
            limit_owners: ids_of(&c.limit_container_owners, "/etc/passwd"),
            limit_groups: ids_of(&c.limit_container_groups, "/etc/group"),
            limit_paths: c.limit_container_paths.clone(),
            setuid_mount_squashfs: c.allow_setuid_mount_squashfs,
            max_loop_devices: c.max_loop_devices.min(u32::MAX as u64) as u32,
            shared_loop_devices: c.shared_loop_devices,
            sessiondir_max_size_mib: c.sessiondir_max_size.min(u32::MAX as u64) as u32,
            enable_overlay: c.enable_overlay.allows_kernel_overlay(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DevPolicy, SetuidMount};

    #[test]
    fn the_policy_follows_the_conf_directives() {
        let text = "mount dev = minimal\nuser bind control = no\nallow pid ns = no\n\
                    limit container paths = /scratch\nallow setuid-mount squashfs = iflimited\n\
                    limit container owners = root, no-such-user-here\nsessiondir max size = 16\n";
        let p = Policy::from_conf(&conf::parse_str("test.conf", text).unwrap());
        assert_eq!(p.mount_dev, DevPolicy::Minimal);
        assert!(!p.user_bind_control && !p.allow_ns.pid && p.allow_ns.user);
        assert_eq!(p.limit_paths, [PathBuf::from("/scratch")]);
        assert_eq!(p.limit_owners, [0], "unknown names allow nobody, known ones resolve");
        assert_eq!(p.setuid_mount_squashfs, SetuidMount::IfLimited);
        assert!(p.kernel_squashfs_allowed());
        assert_eq!(p.sessiondir_max_size_mib, 16);
    }

    #[test]
    fn owner_names_that_do_not_exist_allow_nobody() {
        let c = conf::parse_str("t", "limit container owners = no-such-user-here\n").unwrap();
        assert_eq!(Policy::from_conf(&c).limit_owners, [u32::MAX]);
    }
}
