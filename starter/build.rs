//! Compiles the container's seccomp filters to BPF at build time (as Rust statics in
//! OUT_DIR/filters.rs), so the starter links no filter compiler. Two programs (seccomp stacks them; each has one match action):
//! `tty.bpf` fails TIOCSTI/TIOCLINUX with EPERM, comparing only the low 32 bits of the ioctl
//! request as the kernel does (CVE-2019-10063); `mountapi.bpf` fails the new mount API and
//! clone3 with ENOSYS, so the container cannot reach host mounts through stray fds
//! (CVE-2021-41133) and libc falls back to the filterable clone.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let target: TargetArch = arch.as_str().try_into().expect("seccompiler supports x86_64 and aarch64 only");
    assert_eq!(arch, std::env::consts::ARCH, "syscall numbers come from the host's libc");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));

    let ioctl_rules = [TIOCSTI, TIOCLINUX]
        .map(|cmd| {
            let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, cmd).unwrap();
            SeccompRule::new(vec![cond]).unwrap()
        })
        .to_vec();
    let tty = BTreeMap::from([(libc::SYS_ioctl, ioctl_rules)]);
    let mut rust = program("TTY", tty, libc::EPERM, target);

    let mount_api = [
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_clone3,
    ];
    let rules = mount_api.iter().map(|&nr| (nr, vec![])).collect();
    rust += &program("MOUNT_API", rules, libc::ENOSYS, target);
    std::fs::write(out.join("filters.rs"), rust).unwrap();
}

/// A `static NAME: &[libc::sock_filter]` item holding the compiled program.
fn program(name: &str, rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32, arch: TargetArch) -> String {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch).unwrap();
    let prog: BpfProgram = filter.try_into().unwrap();
    let body: String = prog
        .iter()
        .map(|f| format!("libc::sock_filter {{ code: {}, jt: {}, jf: {}, k: {} }},\n", f.code, f.jt, f.jf, f.k))
        .collect();
    format!("pub static {name}: &[libc::sock_filter] = &[\n{body}];\n")
}
