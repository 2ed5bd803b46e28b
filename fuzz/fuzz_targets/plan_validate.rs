//! The starter's request path on arbitrary bytes: `plan::decode` then `plan::validate`,
//! against the default apptainer.conf, a permissive and a limited one, for a setuid and a
//! user-namespace caller. The Plan comes from the unprivileged frontend, so no input may
//! panic, and whatever `validate` accepts is re-checked here rule by rule against the
//! apptainer.conf it was validated with: a plan that gets through must not ask for anything
//! the admin's file forbids (the oracle of attack class T37). The oracle reads `conf::Conf`,
//! not the starter's `Policy`, so it does not repeat the starter's own translation.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use conf::{Accounts, Conf, MountDev};
use libfuzzer_sys::fuzz_target;
use starter::plan::{self, Caller, ContainerPath, ImageKind, Mount, Plan, Policy, ValidatedPlan};

/// One site: its apptainer.conf and the policy the starter derives from it.
struct Site {
    conf: Conf,
    policy: Policy,
}

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = plan::decode(data) else {
        return;
    };
    round_trip(&plan);
    for site in sites() {
        for setuid in [true, false] {
            let caller = caller(setuid);
            match plan::validate(plan.clone(), &site.policy, &caller) {
                Ok(v) => check_validated(&plan, &v, &site.conf, &caller),
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

const OPEN_CONF: &str = "allow setuid = yes\nallow pid ns = yes\nallow ipc ns = yes\n\
    allow user ns = yes\nallow uts ns = yes\nmount dev = yes\nuser bind control = yes\n\
    bind path = /etc/localtime\nallow container dir = yes\nenable overlay = yes\n\
    sessiondir max size = 64\nallow setuid-mount squashfs = yes\n";
const LIMITED_CONF: &str = "user bind control = no\nmount dev = minimal\nmount sys = no\n\
    allow container dir = no\nlimit container paths = /scratch\n\
    limit container owners = root\nenable overlay = no\nbind path = /etc/hosts:/etc/h\n";

/// The shipped defaults, everything allowed, and a site with limits.
fn sites() -> &'static [Site; 3] {
    static S: OnceLock<[Site; 3]> = OnceLock::new();
    S.get_or_init(|| {
        let users = Accounts::parse(b"root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n");
        let groups = Accounts::parse(b"root:x:0:\nu:x:1000:\n");
        let site = |conf: Conf| Site {
            policy: Policy::resolved(&conf, &users, &groups),
            conf,
        };
        let parse = |text| conf::parse_str("fuzz.conf", text).expect("fixed conf parses");
        [
            site(Conf::default()),
            site(parse(OPEN_CONF)),
            site(parse(LIMITED_CONF)),
        ]
    })
}

fn check_validated(plan: &Plan, v: &ValidatedPlan, conf: &Conf, caller: &Caller) {
    check_image_rules(plan, v, conf, caller);
    check_namespace_rules(v, conf, caller);
    assert!(v.mounts().len() <= 256);
    for m in v.mounts() {
        check_mount(m, conf, caller);
    }
    // argv[0]: an absolute container path, or a bare name the starter searches in PATH.
    let argv0 = v.process.argv.first().expect("argv is never empty");
    let bare = !argv0.contains('/') && !["", ".", ".."].contains(&argv0.as_str());
    assert!(
        bare || ContainerPath::parse(argv0).is_ok(),
        "argv[0] {argv0:?}"
    );
    assert!(v.process.umask.is_none_or(|m| m <= 0o777));
    assert!(v
        .process
        .argv
        .iter()
        .chain(&v.process.env)
        .all(|s| !s.contains('\0')));
    assert!(v
        .process
        .env
        .iter()
        .all(|e| e.find('=').is_some_and(|i| i > 0)));
    ContainerPath::parse(v.cwd().as_str()).expect("cwd re-parses");
}

fn check_image_rules(plan: &Plan, v: &ValidatedPlan, conf: &Conf, caller: &Caller) {
    let img = &v.image;
    assert!(img.path.is_absolute());
    assert!(conf.container_path_allowed(&img.path));
    if !conf.limit_container_paths.is_empty() {
        assert!(!img.path.components().any(|c| c.as_os_str() == ".."));
    }
    let allowed = match img.kind {
        ImageKind::Sif => conf.allow_container_sif,
        ImageKind::Squashfs => conf.allow_container_squashfs,
        ImageKind::Sandbox => conf.allow_container_dir,
    };
    assert!(allowed, "image kind {:?} is disabled", img.kind);
    if img.writable {
        assert!(img.kind == ImageKind::Sandbox && !caller.setuid);
    }
    if v.writable_tmpfs {
        assert!(conf.enable_overlay.allows_overlay());
    }
    assert_eq!(v.hostname, plan.hostname);
}

fn check_namespace_rules(v: &ValidatedPlan, conf: &Conf, caller: &Caller) {
    let ns = v.namespaces;
    assert!(!ns.user || conf.allow_user_ns);
    assert!(!ns.pid || conf.allow_pid_ns);
    assert!(!ns.ipc || conf.allow_ipc_ns);
    assert!(!ns.uts || conf.allow_uts_ns);
    if caller.setuid {
        // The setuid starter makes a user namespace only for fakeroot (from /etc/subuid).
        assert!(conf.allow_setuid && ns.user == v.fakeroot);
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

fn check_mount(m: &Mount, conf: &Conf, caller: &Caller) {
    match m {
        Mount::Proc => assert!(conf.mount_proc),
        Mount::Sys => assert!(conf.mount_sys),
        Mount::Devpts => assert!(conf.mount_devpts),
        Mount::Dev { minimal } => match conf.mount_dev {
            MountDev::No => panic!("/dev mounted although 'mount dev = no'"),
            MountDev::Minimal => assert!(*minimal),
            MountDev::Yes => {}
        },
        Mount::Tmpfs { dst, size_mib } => {
            assert!(*size_mib >= 1 && u64::from(*size_mib) <= conf.sessiondir_max_size);
            check_destination(dst);
        }
        Mount::Bind { src, dst, .. } => {
            assert!(src.is_absolute());
            check_destination(dst);
            assert!(
                bind_allowed(src, dst, conf, caller),
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
        Mount::GpuDevice { name } => {
            // A device name becomes a path under the host's /dev: one plain component only.
            assert!(
                !matches!(conf.mount_dev, MountDev::No),
                "GPU device with 'mount dev = no'"
            );
            let nvidia = name
                .strip_prefix("nvidia")
                .is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            assert!(nvidia || name == "kfd" || name == "dri", "device {name:?}");
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
fn bind_allowed(src: &PathBuf, dst: &ContainerPath, conf: &Conf, caller: &Caller) -> bool {
    conf.user_bind_control
        || (conf.mount_home && *src == caller.home)
        || (conf.mount_tmp && (src == Path::new("/tmp") || src == Path::new("/var/tmp")))
        || *src == caller.cwd
        || conf
            .bind_path
            .iter()
            .any(|b| b.source == *src && b.destination.as_os_str() == dst.as_str())
}
