//! Unit tests of op planning and execution over a recording `Sys`: which mounts happen,
//! in which order, with which flags, without privileges.

use super::*;
use crate::sys::{SysResult, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use starter::plan::{self, Caller, ImageKind, Namespaces, Plan, PlanImage, PlanMount, Policy, Process};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Open { path: String, resolve: u64 },
    Mkdir { name: String },
    OpenTree { path: String, recursive: bool },
    SetAttr { set: u64, recursive: bool },
    MoveMount,
    FsOpen(String),
    FsConfig(String, String),
    FsMount { attrs: u64 },
    Write(usize),
    Symlink(String, String),
}

/// Records every call; opens of paths listed in `missing` fail with ENOENT once.
#[derive(Default)]
struct RecordingSys {
    calls: RefCell<Vec<Call>>,
    missing: RefCell<Vec<String>>,
}

fn fake_fd() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

impl Sys for RecordingSys {
    fn openat2(&self, _dir: RawFd, path: &str, _flags: i32, _mode: u32, resolve: u64) -> SysResult<OwnedFd> {
        self.calls.borrow_mut().push(Call::Open { path: path.into(), resolve });
        let mut missing = self.missing.borrow_mut();
        if let Some(i) = missing.iter().position(|m| m == path) {
            missing.remove(i);
            return Err(Errno::ENOENT);
        }
        Ok(fake_fd())
    }
    fn mkdirat(&self, _dir: BorrowedFd<'_>, name: &str, _mode: u32) -> SysResult<()> {
        self.calls.borrow_mut().push(Call::Mkdir { name: name.into() });
        Ok(())
    }
    fn open_tree(&self, _dir: RawFd, path: &str, recursive: bool) -> SysResult<OwnedFd> {
        self.calls.borrow_mut().push(Call::OpenTree { path: path.into(), recursive });
        Ok(fake_fd())
    }
    fn mount_setattr(&self, _fd: BorrowedFd<'_>, set: u64, _p: u64, recursive: bool) -> SysResult<()> {
        self.calls.borrow_mut().push(Call::SetAttr { set, recursive });
        Ok(())
    }
    fn move_mount(&self, _tree: BorrowedFd<'_>, _onto: BorrowedFd<'_>) -> SysResult<()> {
        self.calls.borrow_mut().push(Call::MoveMount);
        Ok(())
    }
    fn fsopen(&self, fstype: &str) -> SysResult<OwnedFd> {
        self.calls.borrow_mut().push(Call::FsOpen(fstype.into()));
        Ok(fake_fd())
    }
    fn fsconfig(&self, _fs: BorrowedFd<'_>, key: &str, value: &str) -> SysResult<()> {
        self.calls.borrow_mut().push(Call::FsConfig(key.into(), value.into()));
        Ok(())
    }
    fn fsmount(&self, _fs: BorrowedFd<'_>, attrs: u64) -> SysResult<OwnedFd> {
        self.calls.borrow_mut().push(Call::FsMount { attrs });
        Ok(fake_fd())
    }
    fn write(&self, _fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<()> {
        self.calls.borrow_mut().push(Call::Write(data.len()));
        Ok(())
    }
    fn symlinkat(&self, target: &str, _dir: BorrowedFd<'_>, name: &str) -> SysResult<()> {
        self.calls.borrow_mut().push(Call::Symlink(target.into(), name.into()));
        Ok(())
    }
}

fn validated(mounts: Vec<PlanMount>, pid: bool) -> plan::ValidatedPlan {
    let conf = conf::parse_str("t", "sessiondir max size = 64\n").unwrap();
    let policy = Policy::resolved(&conf, &conf::Accounts::default(), &conf::Accounts::default());
    let caller =
        Caller { uid: 1000, gid: 1000, groups: vec![], home: "/home/u".into(), cwd: "/".into(), setuid: false };
    let plan = Plan {
        version: plan::PLAN_VERSION,
        image: PlanImage { path: "/x.sif".into(), kind: ImageKind::Sif, writable: false },
        namespaces: Namespaces { user: true, pid, ..Default::default() },
        hostname: None,
        mounts,
        writable_tmpfs: false,
        fakeroot: false,
        capabilities: Default::default(),
        init: false,
        instance: false,
        join: None,
        overlays: Vec::new(),
        process: Process { argv: vec!["/bin/true".into()], env: vec![], cwd: "/".into(), umask: None },
    };
    plan::validate(plan, &policy, &caller).unwrap()
}

#[test]
fn proc_is_a_new_instance_only_with_a_pid_namespace() {
    let with_pid = plan_ops(&validated(vec![PlanMount::Proc], true));
    assert_eq!(with_pid, [Op::NewFs { fs: NewFs::Proc, dst: cp("/proc") }]);
    let without = plan_ops(&validated(vec![PlanMount::Proc], false));
    assert_eq!(without, [Op::BindHost { src: "/proc".into(), dst: cp("/proc"), read_only: false, devices: false }]);
}

#[test]
fn a_minimal_dev_binds_only_the_standard_devices_and_links_ptmx() {
    let ops = plan_ops(&validated(vec![PlanMount::Dev { minimal: true }, PlanMount::Devpts], false));
    let binds: Vec<_> = ops
        .iter()
        .filter_map(|o| if let Op::BindHost { src, devices: true, .. } = o { Some(src.clone()) } else { None })
        .collect();
    assert_eq!(binds, MINIMAL_DEVICES.map(|d| PathBuf::from(format!("/dev/{d}"))));
    assert_eq!(ops.last(), Some(&Op::Symlink { target: "pts/ptmx", dst: cp("/dev/ptmx") }));
}

#[test]
fn user_binds_are_cloned_recursively_and_always_get_nosuid_and_nodev() {
    let sys = RecordingSys::default();
    let bind = PlanMount::Bind { src: "/data".into(), dst: "/mnt".into(), read_only: true, kind: plan::BindKind::User };
    let ops = plan_ops(&validated(vec![bind], false));
    clone_sources(&sys, &ops).unwrap();
    assert_eq!(
        sys.calls.borrow().as_slice(),
        [
            Call::OpenTree { path: "/data".into(), recursive: true },
            Call::SetAttr { set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY, recursive: true },
        ]
    );
}

#[test]
fn destinations_resolve_inside_the_root_and_kernel_filesystems_refuse_symlinks() {
    let sys = RecordingSys::default();
    let ops = plan_ops(&validated(vec![PlanMount::Proc], true));
    let root = fake_fd();
    apply(&sys, root.as_fd(), root.as_fd(), &ops, vec![None]).unwrap();
    let calls = sys.calls.borrow();
    assert_eq!(
        calls[..4],
        [
            Call::FsOpen("proc".into()),
            Call::FsConfig("".into(), "".into()),
            Call::FsMount { attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | crate::sys::MOUNT_ATTR_NOEXEC },
            Call::Open {
                path: "proc".into(),
                resolve: sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS | sys::RESOLVE_NO_SYMLINKS
            }
        ]
    );
    assert_eq!(calls.last(), Some(&Call::MoveMount));
}

#[test]
fn a_missing_mount_point_is_created_component_by_component_under_the_root() {
    let sys = RecordingSys::default();
    sys.missing.borrow_mut().push("a/b".to_string());
    let root = fake_fd();
    mountpoint(&sys, root.as_fd(), &cp("/a/b"), true, false, &[]).unwrap();
    let calls = sys.calls.borrow();
    assert!(calls.contains(&Call::Mkdir { name: "b".into() }), "{calls:?}");
    assert!(
        calls.iter().all(|c| !matches!(c, Call::Open { resolve, .. } if resolve & sys::RESOLVE_IN_ROOT == 0)),
        "{calls:?}"
    );
}

#[test]
fn generated_files_are_written_to_the_session_and_bound_read_only() {
    let sys = RecordingSys::default();
    let f = PlanMount::File { dst: "/etc/passwd".into(), contents: "u:x:1:1::/:/bin/sh\n".into() };
    let ops = plan_ops(&validated(vec![f], false));
    let root = fake_fd();
    apply(&sys, root.as_fd(), root.as_fd(), &ops, vec![None]).unwrap();
    let calls = sys.calls.borrow();
    assert!(calls.contains(&Call::Write(19)), "{calls:?}");
    assert!(
        calls.contains(&Call::SetAttr {
            set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY,
            recursive: false
        }),
        "{calls:?}"
    );
    let _ = root.as_raw_fd();
}
