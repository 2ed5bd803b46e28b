//! `apptainer instance stop NAME|--all`: the reference's sequence. The stop signal (SIGINT by
//! default, `--signal`, SIGKILL with `--force`) goes to each instance's init, which passes it
//! on to the instance's processes and exits once they are gone; after `--timeout` seconds
//! the whole process group is killed. We then wait until the starter that launched the
//! instance has exited, because it is what unmounts the image (FUSE daemon, loop device).

use super::list::live;
use super::state::{process_is_instance, running, titled, InstanceFile, Places};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long the starters get to clean up after SIGKILL before we stop waiting for them.
const CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// Parses `--signal` as the reference accepts it: `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("unknown signal {text:?}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).with_context(|| format!("unknown signal {text:?}"))
}

/// Stops the instances matching `pattern` (`*` for `--all`).
pub fn stop(places: &Places, pattern: &str, sig: Signal, timeout: Duration) -> Result<()> {
    let list = live(places, pattern)?;
    if list.is_empty() {
        bail!("no instance found");
    }
    for i in &list {
        crate::info!(
            "Stopping {} instance of {} (PID={})",
            i.name,
            i.image,
            i.pid
        );
        if sig == Signal::SIGKILL {
            // The init cannot pass SIGKILL on: kill what it would have signalled too.
            kill_group(places, i);
        } else {
            let _ = kill(Pid::from_raw(i.pid), sig);
        }
    }
    let left = wait_until_gone(places, &list, timeout);
    for i in &left {
        crate::info!(
            "Killing {} instance of {} (PID={}) (Timeout)",
            i.name,
            i.image,
            i.pid
        );
        kill_group(places, i);
    }
    for i in wait_until_gone(places, &left, CLEANUP_GRACE) {
        crate::warning!(
            "the starter of instance {} (PID={}) is still running",
            i.name,
            i.ppid
        );
    }
    for i in &list {
        places.remove(&i.name);
    }
    Ok(())
}

/// SIGKILL to the process group of the instance's starter (it started a session of its own:
/// the init, the startscript and what that started are in it, the FUSE daemon dies with the
/// starter), and to the init's own group when it leads one. Only verified processes are hit.
fn kill_group(places: &Places, i: &InstanceFile) {
    let leader =
        |pid: i32| nix::unistd::getpgid(Some(Pid::from_raw(pid))).is_ok_and(|g| g.as_raw() == pid);
    if titled(i.ppid, &places.user, &i.name) && leader(i.ppid) {
        let _ = kill(Pid::from_raw(-i.ppid), Signal::SIGKILL);
    }
    if process_is_instance(i.pid, places.uid, &places.user, &i.name) {
        let target = if leader(i.pid) { -i.pid } else { i.pid };
        let _ = kill(Pid::from_raw(target), Signal::SIGKILL);
    }
}

/// Waits (polling) until neither the init nor the starter of each instance is left, at
/// most `timeout`; returns the instances still running.
fn wait_until_gone(places: &Places, list: &[InstanceFile], timeout: Duration) -> Vec<InstanceFile> {
    let deadline = Instant::now() + timeout;
    loop {
        let running: Vec<InstanceFile> = list
            .iter()
            .filter(|i| {
                running(i.pid) || (running(i.ppid) && titled(i.ppid, &places.user, &i.name))
            })
            .cloned()
            .collect();
        if running.is_empty() || Instant::now() >= deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_accepted_in_the_references_spellings() {
        for s in ["SIGTERM", "TERM", "term", "15"] {
            assert_eq!(parse_signal(s).unwrap(), Signal::SIGTERM, "{s}");
        }
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
