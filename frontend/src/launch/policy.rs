//! The starter's `Policy` derived from apptainer.conf, so the frontend can run
//! `starter::plan::validate` before executing the starter and report a refusal early and
//! in plain words. Only the starter's own verdict, from the root-owned file, counts.

use conf::{Conf, MountDev, SetuidMountSquashfs};
use nix::unistd::{Group, User};
use starter::plan::{DevPolicy, Namespaces, Policy, SetuidMount};

/// Translates the conf into the rules `validate` applies.
pub fn from_conf(conf: &Conf) -> Policy {
    Policy {
        allow_setuid: conf.allow_setuid,
        allow_ns: Namespaces {
            user: conf.allow_user_ns,
            pid: conf.allow_pid_ns,
            ipc: conf.allow_ipc_ns,
            uts: conf.allow_uts_ns,
            // apptainer.conf has no directive for a bare network namespace.
            net: true,
        },
        user_bind_control: conf.user_bind_control,
        mount_proc: conf.mount_proc,
        mount_sys: conf.mount_sys,
        mount_dev: match conf.mount_dev {
            MountDev::Yes => DevPolicy::Yes,
            MountDev::No => DevPolicy::No,
            MountDev::Minimal => DevPolicy::Minimal,
        },
        mount_devpts: conf.mount_devpts,
        mount_home: conf.mount_home,
        mount_tmp: conf.mount_tmp,
        bind_path: conf
            .bind_path
            .iter()
            .map(|b| (b.source.clone(), b.destination.clone()))
            .collect(),
        allow_sif: conf.allow_container_sif,
        allow_squashfs: conf.allow_container_squashfs,
        allow_dir: conf.allow_container_dir,
        limit_owners: conf
            .limit_container_owners
            .iter()
            .filter_map(|n| User::from_name(n).ok().flatten().map(|u| u.uid.as_raw()))
            .collect(),
        limit_groups: conf
            .limit_container_groups
            .iter()
            .filter_map(|n| Group::from_name(n).ok().flatten().map(|g| g.gid.as_raw()))
            .collect(),
        limit_paths: conf.limit_container_paths.clone(),
        setuid_mount_squashfs: match conf.allow_setuid_mount_squashfs {
            SetuidMountSquashfs::Yes => SetuidMount::Yes,
            SetuidMountSquashfs::No => SetuidMount::No,
            SetuidMountSquashfs::IfLimited => SetuidMount::IfLimited,
        },
        max_loop_devices: u32::try_from(conf.max_loop_devices).unwrap_or(u32::MAX),
        shared_loop_devices: conf.shared_loop_devices,
        sessiondir_max_size_mib: u32::try_from(conf.sessiondir_max_size).unwrap_or(u32::MAX),
        enable_overlay: conf.enable_overlay.allows_overlay(),
    }
}
