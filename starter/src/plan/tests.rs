//! Unit tests of `validate`: each rule of apptainer.conf refuses the Plan that breaks it.

use super::*;

/// Everything allowed (as the tests below need), with one `bind path` entry.
fn policy() -> Policy {
    let text = "allow setuid = yes\nbind path = /etc/localtime\nsessiondir max size = 64\n\
                allow setuid-mount squashfs = iflimited\n";
    Policy::resolved(&conf::parse_str("t", text).unwrap(), &conf::Accounts::default(), &conf::Accounts::default())
}

/// `policy()` changed by `f`.
fn with(f: impl FnOnce(&mut conf::Conf)) -> Policy {
    let mut p = policy();
    f(&mut p.conf);
    p
}

fn caller(setuid: bool) -> Caller {
    Caller { uid: 1000, gid: 1000, groups: vec![1000], home: "/home/u".into(), cwd: "/home/u/w".into(), setuid }
}

fn plan() -> Plan {
    Plan {
        version: PLAN_VERSION,
        image: PlanImage { path: "/scratch/a.sif".into(), kind: ImageKind::Sif, writable: false },
        namespaces: Namespaces { user: true, ..Default::default() },
        hostname: None,
        mounts: vec![PlanMount::Proc, PlanMount::Dev { minimal: true }],
        writable_tmpfs: false,
        fakeroot: false,
        capabilities: CapRequest::default(),
        init: false,
        instance: false,
        join: None,
        overlays: Vec::new(),
        process: Process { argv: vec!["/bin/sh".into()], env: vec!["PATH=/bin".into()], cwd: "/".into(), umask: None },
    }
}

fn with_mount(m: PlanMount) -> Plan {
    let mut p = plan();
    p.mounts.push(m);
    p
}

fn user_bind(dst: &str) -> PlanMount {
    PlanMount::Bind { src: "/data".into(), dst: dst.into(), read_only: false, kind: BindKind::User }
}

#[test]
fn a_plain_plan_is_accepted_and_keeps_its_mounts_in_order() {
    let v = validate(plan(), &policy(), &caller(false)).unwrap();
    assert_eq!(v.mounts(), [Mount::Proc, Mount::Dev { minimal: true }]);
    assert_eq!(v.process.argv, ["/bin/sh"]);
}

#[test]
fn relative_and_dotdot_destinations_are_refused() {
    for dst in ["mnt", "/mnt/../etc", "/mnt/./x", "/mnt//x", "/mnt/", ""] {
        let err = validate(with_mount(user_bind(dst)), &policy(), &caller(false)).unwrap_err();
        assert!(matches!(err, PlanError::Invalid { what: "container path", .. }), "{dst}: {err}");
    }
}

#[test]
fn binds_over_the_root_proc_or_sys_are_refused() {
    for dst in ["/", "/proc", "/proc/sys", "/sys", "/dev"] {
        let err = validate(with_mount(user_bind(dst)), &policy(), &caller(false)).unwrap_err();
        let why = "is reserved for the runtime";
        assert_eq!(err, PlanError::Invalid { what: "bind destination", value: dst.into(), why });
    }
    assert!(validate(with_mount(user_bind("/process")), &policy(), &caller(false)).is_ok());
}

#[test]
fn user_binds_are_refused_when_user_bind_control_is_off() {
    let p = with(|c| c.user_bind_control = false);
    let err = validate(with_mount(user_bind("/mnt")), &p, &caller(false)).unwrap_err();
    assert!(err.to_string().contains("user bind control"), "{err}");
}

#[test]
fn a_home_bind_must_be_the_callers_home_and_allowed() {
    let home =
        |src: &str| PlanMount::Bind { src: src.into(), dst: "/home/u".into(), read_only: false, kind: BindKind::Home };
    assert!(validate(with_mount(home("/home/u")), &policy(), &caller(false)).is_ok());
    assert!(validate(with_mount(home("/root")), &policy(), &caller(false)).is_err());
    let p = with(|c| c.mount_home = false);
    assert!(validate(with_mount(home("/home/u")), &p, &caller(false)).is_err());
}

#[test]
fn a_conf_bind_must_match_a_bind_path_entry() {
    let b = |dst: &str| PlanMount::Bind {
        src: "/etc/localtime".into(),
        dst: dst.into(),
        read_only: true,
        kind: BindKind::Conf,
    };
    assert!(validate(with_mount(b("/etc/localtime")), &policy(), &caller(false)).is_ok());
    assert!(validate(with_mount(b("/etc/other")), &policy(), &caller(false)).is_err());
}

#[test]
fn disallowed_namespaces_are_refused() {
    let mut p = plan();
    p.namespaces.pid = true;
    let pol = with(|c| c.allow_pid_ns = false);
    let err = validate(p, &pol, &caller(false)).unwrap_err();
    assert_eq!(err.to_string(), "namespace 'pid' is not allowed by apptainer.conf (allow pid ns)");
}

#[test]
fn the_setuid_starter_makes_user_namespaces_only_for_fakeroot_and_needs_allow_setuid() {
    assert!(validate(plan(), &policy(), &caller(true)).is_err());
    let mut p = plan();
    p.namespaces.user = false;
    assert!(validate(p.clone(), &policy(), &caller(true)).is_ok());
    let no_suid = with(|c| c.allow_setuid = false);
    assert!(validate(p.clone(), &no_suid, &caller(true)).is_err());
    p.fakeroot = true;
    assert!(validate(p.clone(), &policy(), &caller(true)).is_err(), "fakeroot needs a user namespace");
    p.namespaces.user = true;
    assert!(validate(p.clone(), &policy(), &caller(true)).is_ok(), "fakeroot in a user namespace");
    let no_userns = with(|c| c.allow_user_ns = false);
    assert!(validate(p, &no_userns, &caller(true)).is_err(), "allow user ns = no");
}

#[test]
fn privileged_root_needs_no_allow_setuid_and_may_write_only_a_sandbox() {
    let root = Caller { uid: 0, gid: 0, groups: vec![0], home: "/root".into(), ..caller(true) };
    let no_suid = with(|c| c.allow_setuid = false);
    let mut p = plan();
    p.namespaces.user = false;
    assert!(validate(p.clone(), &no_suid, &root).is_ok());
    p.image = PlanImage { path: "/scratch/sb".into(), kind: ImageKind::Sandbox, writable: true };
    assert!(validate(p.clone(), &no_suid, &root).is_ok());
    assert!(validate(p.clone(), &policy(), &caller(true)).is_err(), "a user's writable sandbox");
    p.image = PlanImage { path: "/scratch/a.sif".into(), kind: ImageKind::Sif, writable: true };
    assert!(validate(p, &policy(), &root).is_err(), "a SIF's overlay needs a user namespace");
}

#[test]
fn the_user_namespace_starter_requires_a_user_namespace() {
    let mut p = plan();
    p.namespaces.user = false;
    assert!(validate(p, &policy(), &caller(false)).is_err());
}

#[test]
fn limit_container_paths_match_whole_components() {
    let pol = with(|c| c.limit_container_paths = vec![PathBuf::from("/scratch")]);
    assert!(pol.conf.container_path_allowed(Path::new("/scratch/a.sif")));
    assert!(!pol.conf.container_path_allowed(Path::new("/scratch2/a.sif")));
    assert!(!pol.conf.container_path_allowed(Path::new("/scratch/../etc/a.sif")));
    let mut p = plan();
    p.image.path = "/scratch2/a.sif".into();
    assert!(validate(p, &pol, &caller(false)).is_err());
    assert!(validate(plan(), &pol, &caller(false)).is_ok());
}

#[test]
fn limit_container_owners_and_groups_check_the_opened_file() {
    let pol = Policy { limit_owners: vec![0], limit_groups: vec![0], ..policy() };
    assert!(pol.check_opened_image(Path::new("/x.sif"), 0, 0).is_ok());
    let err = pol.check_opened_image(Path::new("/x.sif"), 1000, 0).unwrap_err();
    assert!(err.to_string().contains("limit container owners"), "{err}");
    assert!(pol.check_opened_image(Path::new("/x.sif"), 0, 1000).is_err());
    assert!(with(|c| c.limit_container_owners = vec!["root".into()]).conf.may_kernel_mount_squashfs_setuid());
    assert!(!policy().conf.may_kernel_mount_squashfs_setuid(), "iflimited without limits");
}

#[test]
fn disabled_image_types_are_refused() {
    let pol = with(|c| c.allow_container_sif = false);
    assert!(validate(plan(), &pol, &caller(false)).is_err());
}

#[test]
fn generated_files_only_go_to_known_destinations() {
    let f = |dst: &str| PlanMount::File { dst: dst.into(), contents: "x".into() };
    assert!(validate(with_mount(f("/etc/passwd")), &policy(), &caller(false)).is_ok());
    assert!(validate(with_mount(f("/etc/ld.so.preload")), &policy(), &caller(false)).is_err());
}

#[test]
fn oversized_malformed_and_unknown_field_json_is_refused() {
    let ok = serde_json::to_vec(&plan()).unwrap();
    assert_eq!(decode(&ok).unwrap(), plan());
    assert_eq!(decode(&vec![b' '; MAX_PLAN_BYTES + 1]), Err(PlanError::TooLarge));
    assert!(matches!(decode(b"{\"version\":1"), Err(PlanError::Malformed(_))));
    let mut v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
    v["uid_map"] = "0 0 1".into();
    let err = decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn other_versions_are_refused() {
    let mut p = plan();
    p.version = 2;
    assert_eq!(validate(p, &policy(), &caller(false)).unwrap_err(), PlanError::Version(2));
}

#[test]
fn process_needs_an_absolute_or_bare_argv0_a_sane_umask_and_proper_env() {
    for bad in ["bin/sh", "./sh", "", ".", ".."] {
        let mut p = plan();
        p.process.argv = vec![bad.into()];
        assert!(validate(p, &policy(), &caller(false)).is_err(), "{bad:?}");
    }
    let mut p = plan();
    p.process.argv = vec!["sh".into()];
    p.process.umask = Some(0o777);
    assert!(validate(p.clone(), &policy(), &caller(false)).is_ok());
    p.process.umask = Some(0o1000);
    assert!(validate(p, &policy(), &caller(false)).is_err());
    let mut p = plan();
    p.process.env = vec!["NOEQUALS".into()];
    assert!(validate(p, &policy(), &caller(false)).is_err());
    let mut p = plan();
    p.process.argv = vec![];
    assert!(validate(p, &policy(), &caller(false)).is_err());
}

#[test]
fn hostname_needs_a_uts_namespace_and_sane_characters() {
    let mut p = plan();
    p.hostname = Some("box".into());
    assert!(validate(p.clone(), &policy(), &caller(false)).is_err());
    p.namespaces.uts = true;
    assert!(validate(p.clone(), &policy(), &caller(false)).is_ok());
    p.hostname = Some("a\nb".into());
    assert!(validate(p, &policy(), &caller(false)).is_err());
}

#[test]
fn tmpfs_size_is_capped_by_sessiondir_max_size() {
    let t = |size_mib| PlanMount::Tmpfs { dst: "/scratch".into(), size_mib };
    assert!(validate(with_mount(t(64)), &policy(), &caller(false)).is_ok());
    assert!(validate(with_mount(t(65)), &policy(), &caller(false)).is_err());
}

#[test]
fn the_policy_follows_the_conf_directives() {
    let text = "mount dev = minimal\nuser bind control = no\nallow pid ns = no\n\
                limit container paths = /scratch\nallow setuid-mount squashfs = iflimited\n\
                limit container owners = root, no-such-user-here\nsessiondir max size = 16\n";
    let users = conf::Accounts::parse(b"root:x:0:0:root:/root:/bin/sh\n");
    let p = Policy::resolved(&conf::parse_str("test.conf", text).unwrap(), &users, &conf::Accounts::default());
    assert_eq!(p.conf.mount_dev, DevPolicy::Minimal);
    assert_eq!(p.conf.limit_container_paths, [PathBuf::from("/scratch")]);
    assert_eq!(p.limit_owners, [0], "unknown names allow nobody, known ones resolve");
    assert!(p.limit_groups.is_empty());
}

#[test]
fn owner_names_that_do_not_exist_allow_nobody() {
    let c = conf::parse_str("t", "limit container owners = no-such-user-here\n").unwrap();
    assert_eq!(Policy::resolved(&c, &conf::Accounts::default(), &conf::Accounts::default()).limit_owners, [u32::MAX]);
}

#[test]
fn overlays_need_user_namespace_mode_one_writable_layer_and_enable_overlay() {
    let ov = |path: &str, writable| PlanOverlay { path: path.into(), writable };
    let mut p = plan();
    p.overlays = vec![ov("/o/a", true), ov("/o/b.img", false)];
    assert!(validate(p.clone(), &policy(), &caller(false)).is_ok());
    let err = validate(p.clone(), &policy(), &caller(true)).unwrap_err().to_string();
    assert!(err.contains("user-namespace mode"), "{err}");
    let off = with(|c| c.enable_overlay = conf::EnableOverlay::No);
    assert!(matches!(validate(p.clone(), &off, &caller(false)), Err(PlanError::Denied(_, "enable overlay"))));
    let mut two = p.clone();
    two.overlays.push(ov("/o/c", true));
    assert!(validate(two, &policy(), &caller(false)).unwrap_err().to_string().contains("one writable layer"));
    let mut tmpfs = p.clone();
    tmpfs.writable_tmpfs = true;
    assert!(validate(tmpfs, &policy(), &caller(false)).is_err());
    let mut sif_rw = plan();
    sif_rw.image.writable = true;
    assert!(validate(sif_rw.clone(), &policy(), &caller(false)).is_ok());
    assert!(validate(sif_rw, &policy(), &caller(true)).is_err());
    p.overlays = vec![ov("relative", false)];
    assert!(validate(p, &policy(), &caller(false)).is_err());
}

#[test]
fn only_gpu_device_nodes_can_be_bound_into_dev() {
    for name in ["nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-caps", "dri", "kfd"] {
        let v = validate(with_mount(PlanMount::GpuDevice { name: name.into() }), &policy(), &caller(false));
        assert!(v.is_ok(), "{name}: {v:?}");
    }
    for name in ["sda", "nvidia/../sda", "nvidia0/x", "..", "", "mem", "nvidia\0"] {
        let v = validate(with_mount(PlanMount::GpuDevice { name: name.into() }), &policy(), &caller(false));
        assert!(v.is_err(), "{name}");
    }
    let no_dev = with(|c| c.mount_dev = DevPolicy::No);
    assert!(validate(with_mount(PlanMount::GpuDevice { name: "kfd".into() }), &no_dev, &caller(false)).is_err());
}

#[test]
fn only_root_keeps_or_gains_capabilities_and_drop_caps_wins() {
    use caps::Capability::{CAP_CHOWN, CAP_NET_RAW};
    let all = caps::all().iter().fold(0, |m, c| m | c.bitmask());
    let root = Caller { uid: 0, gid: 0, ..caller(false) };
    let caps = |req: CapRequest, policy: &Policy, who: &Caller| {
        let namespaces = Namespaces { user: !who.setuid, ..Default::default() };
        validate(Plan { capabilities: req, namespaces, ..plan() }, policy, who).map(|v| v.caps())
    };
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // `root default capabilities = full` unless the conf says otherwise.
    assert_eq!(caps(CapRequest::default(), &policy(), &root), Ok(all));
    let drop_raw = CapRequest { drop: names(&["CAP_NET_RAW"]), ..Default::default() };
    assert_eq!(caps(drop_raw, &policy(), &root), Ok(all & !CAP_NET_RAW.bitmask()));
    let no = with(|c| c.root_default_capabilities = conf::RootDefaultCapabilities::No);
    let add = CapRequest { add: names(&["CAP_CHOWN"]), ..Default::default() };
    assert_eq!(caps(add.clone(), &no, &root), Ok(CAP_CHOWN.bitmask()));
    assert_eq!(caps(CapRequest { keep_privs: true, ..Default::default() }, &no, &root), Ok(all));
    let none = CapRequest { keep_privs: true, no_privs: true, ..add.clone() };
    assert_eq!(caps(none, &policy(), &root), Ok(CAP_CHOWN.bitmask()));
    // Anyone else: nothing, and asking for more is refused.
    assert_eq!(
        caps(CapRequest { no_privs: true, drop: names(&["CAP_ALL"]), ..Default::default() }, &policy(), &caller(false)),
        Ok(0)
    );
    for (req, setuid) in
        [(add.clone(), false), (add, true), (CapRequest { keep_privs: true, ..Default::default() }, true)]
    {
        assert!(matches!(caps(req, &policy(), &caller(setuid)), Err(PlanError::Denied(_, "root only"))));
    }
    let bogus = CapRequest { add: names(&["CAP_BOGUS"]), ..Default::default() };
    assert!(matches!(caps(bogus, &policy(), &root), Err(PlanError::Invalid { what: "capability", .. })));
}
