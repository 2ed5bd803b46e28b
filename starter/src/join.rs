//! Instances: the init that keeps one up (`linger`), and joining one (`exec instance://`).
//! The pid of a join Plan is hostile (CVE-2018-19295, CVE-2019-11328). It is pinned with a
//! pidfd; then /proc must show an init this starter made for the caller: named `appinit`,
//! every uid and gid the caller's, running this very starter binary (only our own code can
//! run in a process with that exe as the caller: the setuid one leaves it non-dumpable) and,
//! for the setuid starter, in the initial user namespace. If the pinned process still lives
//! after these reads, they described it. One setns through the pidfd then enters its
//! namespaces. The setuid starter needs SYS_PTRACE for the exe and for setns (the kernel
//! checks ptrace access to the target), raised only here, dropped with everything else.

use crate::creds::Root;
use crate::error::{sys as syserr, Result, StarterError};
use crate::sys::{self, Fork, Pid};
use crate::userns::{note_signal, FORWARDED, PENDING};
use nix::sched::{setns, CloneFlags};
use nix::sys::{prctl, signal::Signal};
use starter::plan::{ensure, ValidatedPlan};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Runs the Plan's process in the instance whose init is `pid`. With a PID namespace the
/// Plan asks for `init`: only the children of a process that joined one are in it.
pub fn run(root: Root, plan: &ValidatedPlan, pid: u32) -> Result<i32> {
    let caller = &root.caller;
    let _ = caller.setuid && caps::raise(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_PTRACE).is_ok();
    let pidfd = sys::pidfd_open(pid).map_err(syserr("cannot find the process to join"))?;
    let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let status = read("status");
    let all = |key: &str, id: u32| status.contains(&format!("\n{key}\t{id}\t{id}\t{id}\t{id}\n"));
    let exe = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let same_exe = exe(&format!("/proc/{pid}/exe")).is_some_and(|e| exe("/proc/self/exe") == Some(e));
    let ours = same_exe && (!caller.setuid || read("uid_map").split_whitespace().eq(["0", "0", "4294967295"]));
    let named = status.lines().any(|l| l == "Name:\tappinit");
    let checked = pid > 1 && named && ours && all("Uid:", caller.uid) && all("Gid:", caller.gid);
    let refused = StarterError::Refused("the process to join is not an instance of the caller");
    ensure(checked && sys::pidfd_alive(pidfd.as_fd()), refused)?;
    let user = if caller.setuid { CloneFlags::empty() } else { CloneFlags::CLONE_NEWUSER };
    setns(&pidfd, CloneFlags::CLONE_NEWNS | user | crate::ns_flags(plan)).map_err(syserr("cannot join"))?;
    crate::creds::no_new_privs()?;
    crate::finish(root, plan).map(|never| match never {})
}

/// The instance's init, once the container process is forked off: it stays up after that
/// process exits, reaping what is reparented to it, until a stop signal, which it passes on
/// to its process group once; it exits when no child is left.
pub fn linger() -> i32 {
    // A child that only sleeps (and dies of the stop signal), so waiting for children also
    // waits for the stop signal, without a window in which a signal could be missed.
    if let Ok(Fork::Child) = sys::fork() {
        let _ = prctl::set_pdeathsig(Signal::SIGKILL);
        loop {
            std::thread::sleep(std::time::Duration::MAX)
        }
    }
    FORWARDED[..4].iter().for_each(|&s| sys::catch_signal(s, note_signal));
    let _ = prctl::set_child_subreaper(true);
    // The name the frontend waits for and joins check; set last, once signals are handled.
    let _ = prctl::set_name(c"appinit");
    let mut stopping = false;
    while sys::waitpid(Pid::from_raw(-1)) != Err(sys::Errno::ECHILD) {
        let sig = PENDING.swap(0, std::sync::atomic::Ordering::SeqCst);
        if sig != 0 && !std::mem::replace(&mut stopping, true) {
            sys::kill(Pid::from_raw(0), sig);
        }
    }
    0
}
