//! Landlock confinement of the frontend's own risky work: unpacking image layers and packing
//! them, and the host-side steps of a definition-file build (unpacking the base image,
//! copying `%files`, packing the root with mksquashfs). The work runs on a thread of its own whose writes the kernel limits to beneath the
//! directories named for it, so a bug in the path checks of the unpacker (a layer entry that
//! escapes the root) still cannot write anywhere else. Reads stay unrestricted: layers, the
//! cache and the tools are read from everywhere.
//!
//! Best effort: on kernels without Landlock (before 5.13, or with it disabled) the work runs
//! unconfined, and the debug log says what the kernel enforced. Only the confined thread
//! and the processes it starts (tar2sqfs) are restricted, never the thread that later execs
//! the setuid starter: Landlock sets no_new_privs on the thread it restricts. For the same
//! reason a step run inside the fakeroot mapping (util-linux `unshare`, which needs the
//! setuid `newuidmap`) is not confined, and neither is anything the starter does (Landlock
//! forbids mount and pivot_root, so `%post` in the container cannot run under it).

use std::path::Path;
use std::sync::mpsc;

use landlock::{
    path_beneath_rules, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};

/// The newest Landlock ABI this code knows the write rights of; older kernels get what
/// they support (best effort), newer ones this set.
const TARGET_ABI: ABI = ABI::V6;

/// What the kernel enforced for a confined thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    Fully,
    Partially,
    Not,
}

impl Enforced {
    fn describe(self) -> &'static str {
        match self {
            Enforced::Fully => "fully enforced",
            Enforced::Partially => "partially enforced (older Landlock ABI)",
            Enforced::Not => "not enforced (the kernel has no Landlock)",
        }
    }
}

/// Limits the calling thread's writes to beneath `writable` (and /dev/null), for good. Returns what the
/// kernel enforced; an error setting up the ruleset is reported as `Not` (best effort).
pub fn restrict_thread(what: &str, writable: &[&Path]) -> Enforced {
    let shown: Vec<String> = writable.iter().map(|p| p.display().to_string()).collect();
    let enforced = match restrict(writable) {
        Ok(RulesetStatus::FullyEnforced) => Enforced::Fully,
        Ok(RulesetStatus::PartiallyEnforced) => Enforced::Partially,
        Ok(RulesetStatus::NotEnforced) => Enforced::Not,
        Err(e) => {
            crate::debug!("landlock: {what}: cannot set up a ruleset: {e}");
            Enforced::Not
        }
    };
    crate::debug!(
        "landlock: {what}: writes limited to {}: {}",
        shown.join(", "),
        enforced.describe()
    );
    enforced
}

fn restrict(writable: &[&Path]) -> Result<RulesetStatus, landlock::RulesetError> {
    let write = AccessFs::from_write(TARGET_ABI);
    let status = Ruleset::default()
        .handle_access(write)?
        .create()?
        .add_rules(path_beneath_rules(writable, write))?
        // Children get /dev/null as stdin/stdout (Stdio::null opens it for writing).
        .add_rules(path_beneath_rules([Path::new("/dev/null")], write))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// Runs `work` on a new thread confined by [`restrict_thread`] to writes beneath `writable`;
/// the programs it starts inherit the confinement.
pub fn confined_step<T: Send>(
    what: &str,
    writable: &[&Path],
    work: impl FnOnce() -> T + Send,
) -> T {
    confined(what, writable, &|(): ()| (), |_| work())
}

/// Says at debug level why the step `what` runs unconfined.
pub fn not_applied(what: &str, why: &str) {
    crate::debug!("landlock: {what}: not applied: {why}");
}

/// Runs `work` on a new thread confined by [`restrict_thread`] to writes beneath
/// `writable`. `work` gets a function that forwards each request to `serve`, which runs on
/// the calling thread: the layer opener need not be shared between threads, and opening a
/// blob stays outside the confinement (it only reads).
pub fn confined<Req, Resp, T>(
    what: &str,
    writable: &[&Path],
    serve: &dyn Fn(Req) -> Resp,
    work: impl FnOnce(&dyn Fn(Req) -> Resp) -> T + Send,
) -> T
where
    Req: Send,
    Resp: Send,
    T: Send,
{
    let (ask_tx, ask_rx) = mpsc::channel::<Req>();
    let (answer_tx, answer_rx) = mpsc::channel::<Resp>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            restrict_thread(what, writable);
            let ask = move |req: Req| -> Resp {
                ask_tx
                    .send(req)
                    .expect("the calling thread serves requests");
                answer_rx
                    .recv()
                    .expect("the calling thread answers every request")
            };
            work(&ask)
        });
        // Ends when the worker is done and drops its sender.
        for req in ask_rx {
            if answer_tx.send(serve(req)).is_err() {
                break;
            }
        }
        match worker.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Whether this kernel has Landlock (ABI 1 or later), asked without restricting anything.
    fn kernel_has_landlock() -> bool {
        std::thread::spawn(|| restrict_thread("probe", &[Path::new("/")]) != Enforced::Not)
            .join()
            .unwrap()
    }

    #[test]
    fn a_confined_thread_writes_inside_but_not_outside_its_directories() {
        let inside = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (inside_file, outside_file) = (inside.path().join("ok"), outside.path().join("escape"));
        let serve = |n: u32| n * 2;
        let (doubled, wrote_inside, wrote_outside) =
            confined("test", &[inside.path()], &serve, |ask| {
                (
                    ask(21),
                    fs::write(&inside_file, "x").is_ok(),
                    fs::write(&outside_file, "x").map_err(|e| e.kind()),
                )
            });
        assert_eq!(doubled, 42, "requests are served by the calling thread");
        assert!(wrote_inside);
        if kernel_has_landlock() {
            assert_eq!(wrote_outside, Err(std::io::ErrorKind::PermissionDenied));
            assert!(!outside_file.exists());
        } else {
            eprintln!("SKIPPED: the outside write is refused only on kernels with Landlock");
        }
        // The calling thread itself is not confined.
        fs::write(outside.path().join("after"), "x").unwrap();
    }

    #[test]
    fn a_symlink_inside_cannot_lead_a_write_outside() {
        if !kernel_has_landlock() {
            eprintln!("SKIPPED: needs a kernel with Landlock");
            return;
        }
        let inside = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), inside.path().join("link")).unwrap();
        let target = inside.path().join("link/escape");
        let serve = |(): ()| ();
        let result = confined("test", &[inside.path()], &serve, |_| {
            fs::write(&target, "x").map_err(|e| e.kind())
        });
        assert_eq!(result, Err(std::io::ErrorKind::PermissionDenied));
        assert!(!outside.path().join("escape").exists());
    }
}
