//! The starter's request path on arbitrary bytes: `plan::decode` then `plan::validate`,
//! against the default apptainer.conf, a permissive and a limited policy, for a setuid and
//! a user-namespace caller. The Plan comes from the unprivileged frontend, so no input may
//! panic, and whatever `validate` accepts is re-checked here rule by rule: a plan that gets
//! through must not ask for anything the policy forbids (the oracle of attack class T37).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use starter::plan::{
    self, Caller, ContainerPath, DevPolicy, ImageKind, Mount, Namespaces, Plan, Policy,
    SetuidMount, ValidatedPlan,
};

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = plan::decode(data) else {
        return;
    };
    round_trip(&plan);
    for policy in policies() {
        for setuid in [true, false] {
            let caller = caller(setuid);
            match plan::validate(plan.clone(), policy, &caller) {
                Ok(v) => check_validated(&plan, &v, policy, &caller),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.chars().any(char::is_control), "{msg:?}");
                }
            }
        }
    }
});

/// What the frontend encodes, the starter decodes to the same value.
fn round_trip(plan: &Plan) {
    let bytes = serde_json::to_vec(plan).expect("a decoded plan encodes");
    if bytes.len() <= plan::MAX_PLAN_BYTES {
        assert_eq!(&plan::decode(&bytes).expect("re-decode"), plan);
    }
}

fn caller(setuid: bool) -> Caller {
    Caller {
        uid: 1000,
        gid: 1000,
        groups: vec![1000, 100],
        home: "/home/u".into(),
        cwd: "/home/u/work".into(),
        setuid,
    }
}

/// The shipped defaults, everything allowed, and a site with `limit container paths`.
fn policies() -> &'static [Policy; 3] {
    static P: OnceLock<[Policy; 3]> = OnceLock::new();
    P.get_or_init(|| {
        let users =
            conf::Accounts::parse(b"root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n");
        let groups = conf::Accounts::parse(b"root:x:0:\nu:x:1000:\n");
        let default = Policy::resolved(&conf::Conf::default(), &users, &groups);
        let open = Policy {
            allow_setuid: true,
            allow_ns: Namespaces {
                user: true,
                pid: true,
                ipc: true,
                uts: true,
                net: true,
            },
            user_bind_control: true,
            mount_proc: true,
            mount_sys: true,
            mount_dev: DevPolicy::Yes,
            mount_devpts: true,
            mount_home: true,
            mount_tmp: true,
            bind_path: vec![("/etc/localtime".into(), "/etc/localtime".into())],
            allow_sif: true,
            allow_squashfs: true,
            allow_dir: true,
            limit_owners: vec![],
            limit_groups: vec![],
            limit_paths: vec![],
            setuid_mount_squashfs: SetuidMount::Yes,
            max_loop_devices: 256,
            shared_loop_devices: true,
            sessiondir_max_size_mib: 64,
            enable_overlay: true,
        };
        let limited = Policy {
            allow_setuid: true,
            user_bind_control: false,
            mount_dev: DevPolicy::Minimal,
            mount_sys: false,
            allow_dir: false,
            limit_paths: vec!["/scratch".into()],
            limit_owners: vec![0],
            setuid_mount_squashfs: SetuidMount::IfLimited,
            enable_overlay: false,
            ..open.clone()
        };
        [default, open, limited]
    })
}

fn check_validated(plan: &Plan, v: &ValidatedPlan, policy: &Policy, caller: &Caller) {
    check_image_rules(plan, v, policy, caller);
    check_namespace_rules(v, policy, caller);
    assert!(v.mounts.len() <= 256);
    for m in &v.mounts {
        check_mount(m, policy, caller);
    }
    let argv0 = v.argv.first().expect("argv is never empty");
    ContainerPath::parse(argv0).expect("argv[0] is an absolute container path");
    assert!(v.argv.iter().chain(&v.env).all(|s| !s.contains('\0')));
    assert!(v.env.iter().all(|e| e.find('=').is_some_and(|i| i > 0)));
    ContainerPath::parse(v.cwd.as_str()).expect("cwd re-parses");
}

fn check_image_rules(plan: &Plan, v: &ValidatedPlan, policy: &Policy, caller: &Caller) {
    let img = &v.image;
    assert!(img.path.is_absolute());
    assert!(plan::path_within_any(&img.path, &policy.limit_paths));
    if !policy.limit_paths.is_empty() {
        assert!(!img.path.components().any(|c| c.as_os_str() == ".."));
    }
    let allowed = match img.kind {
        ImageKind::Sif => policy.allow_sif,
        ImageKind::Squashfs => policy.allow_squashfs,
        ImageKind::Sandbox => policy.allow_dir,
    };
    assert!(allowed, "image kind {:?} is disabled", img.kind);
    if img.writable {
        assert!(img.kind == ImageKind::Sandbox && !caller.setuid);
    }
    if v.writable_tmpfs {
        assert!(policy.enable_overlay);
    }
    assert_eq!(v.hostname, plan.hostname);
}

fn check_namespace_rules(v: &ValidatedPlan, policy: &Policy, caller: &Caller) {
    let ns = v.namespaces;
    let a = policy.allow_ns;
    assert!(!ns.user || a.user);
    assert!(!ns.pid || a.pid);
    assert!(!ns.ipc || a.ipc);
    assert!(!ns.uts || a.uts);
    assert!(!ns.net || a.net);
    if caller.setuid {
        assert!(policy.allow_setuid && !ns.user && !v.fakeroot);
    } else {
        assert!(ns.user, "the user-namespace starter always creates one");
    }
    if let Some(h) = &v.hostname {
        assert!(ns.uts && !h.is_empty() && h.len() <= 64);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    }
}

fn check_mount(m: &Mount, policy: &Policy, caller: &Caller) {
    match m {
        Mount::Proc => assert!(policy.mount_proc),
        Mount::Sys => assert!(policy.mount_sys),
        Mount::Devpts => assert!(policy.mount_devpts),
        Mount::Dev { minimal } => match policy.mount_dev {
            DevPolicy::No => panic!("/dev mounted although 'mount dev = no'"),
            DevPolicy::Minimal => assert!(*minimal),
            DevPolicy::Yes => {}
        },
        Mount::Tmpfs { dst, size_mib } => {
            assert!(*size_mib >= 1 && *size_mib <= policy.sessiondir_max_size_mib);
            check_destination(dst);
        }
        Mount::Bind { src, dst, .. } => {
            assert!(src.is_absolute());
            check_destination(dst);
            assert!(
                bind_allowed(src, dst, policy, caller),
                "bind {src:?} -> {dst:?} passed although no rule allows it"
            );
        }
        Mount::File { dst, contents } => {
            let allowed = [
                "/etc/passwd",
                "/etc/group",
                "/etc/hostname",
                "/etc/resolv.conf",
            ];
            assert!(allowed.contains(&dst.as_str()) && contents.len() <= 256 * 1024);
        }
    }
}

/// The bind and tmpfs destinations the runtime keeps for itself.
fn check_destination(dst: &ContainerPath) {
    let d = Path::new(dst.as_str());
    ContainerPath::parse(dst.as_str()).expect("destination re-parses");
    assert!(
        d != Path::new("/") && d != Path::new("/dev"),
        "reserved destination {d:?}"
    );
    assert!(!d.starts_with("/proc") && !d.starts_with("/sys"), "{d:?}");
}

/// Some rule of the policy admits a bind of `src` (the kind is gone after validation,
/// so any rule will do).
fn bind_allowed(src: &PathBuf, dst: &ContainerPath, policy: &Policy, caller: &Caller) -> bool {
    policy.user_bind_control
        || (policy.mount_home && *src == caller.home)
        || (policy.mount_tmp && (src == Path::new("/tmp") || src == Path::new("/var/tmp")))
        || *src == caller.cwd
        || policy
            .bind_path
            .iter()
            .any(|(s, d)| s == src && d.as_os_str() == dst.as_str())
}
