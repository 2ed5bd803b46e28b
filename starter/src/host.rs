//! The translation of apptainer.conf into the `Policy` that `validate` checks, with owner
//! and group names resolved in the host's own files (read by `conf`, no NSS).

use crate::plan::{Namespaces, Policy};
use conf::Accounts;

impl Policy {
    /// The rules of `conf`, with owner/group names resolved in the host's files read without
    /// ownership checks (the frontend's early check).
    pub fn from_conf(c: &conf::Conf) -> Policy {
        let read = |file| conf::load_accounts(file).unwrap_or_default();
        Policy::resolved(c, &read(conf::PASSWD_FILE), &read(conf::GROUP_FILE))
    }

    /// The rules of `conf` that the starter enforces, with owner/group names resolved.
    pub fn resolved(c: &conf::Conf, users: &Accounts, groups: &Accounts) -> Policy {
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
            limit_owners: users.ids_of(&c.limit_container_owners),
            limit_groups: groups.ids_of(&c.limit_container_groups),
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
    use std::path::PathBuf;

    #[test]
    fn the_policy_follows_the_conf_directives() {
        let text = "mount dev = minimal\nuser bind control = no\nallow pid ns = no\n\
                    limit container paths = /scratch\nallow setuid-mount squashfs = iflimited\n\
                    limit container owners = root, no-such-user-here\nsessiondir max size = 16\n";
        let users = Accounts::parse(b"root:x:0:0:root:/root:/bin/sh\n");
        let p = Policy::resolved(&conf::parse_str("test.conf", text).unwrap(), &users, &Accounts::default());
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
        assert_eq!(Policy::resolved(&c, &Accounts::default(), &Accounts::default()).limit_owners, [u32::MAX]);
    }
}
