//! Leaving nothing behind when a pull, a conversion or an image extraction is interrupted
//! (Ctrl-C, `kill`, a closed terminal).
//!
//! While a [`Watch`] is alive, SIGINT, SIGTERM and SIGHUP no longer kill the process at
//! once: a thread stops the helper programs started with [`spawn`] (so none
//! recreates its output afterwards), removes every path registered with [`register`]
//! (temporary squashfs images, SIFs and blobs being written, temporary caches and
//! sandboxes), and exits with 128 + the signal number, as a shell reports it.
//!
//! Invariant: a path is registered (with [`register`] before it is created, or with
//! [`temp`] in the same step) before anything is written under it and unregistered
//! only once it was renamed into place or removed, so an interrupted pull leaves no
//! partial SIF, no temp file and no half-written cache entry. The registry lock is held
//! from the signal until exit, so no new temp can be registered in between.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result};

/// What is removed or stopped on a signal, by registration number.
#[derive(Default)]
struct Registry {
    paths: BTreeMap<u64, PathBuf>,
    children: BTreeMap<u64, u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    paths: BTreeMap::new(),
    children: BTreeMap::new(),
});
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while the lock was held leaves the maps consistent (each change is one
    // insert or remove), so a poisoned lock is still usable.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered temporary path or child; unregistered when dropped.
#[must_use = "the registration ends when this is dropped"]
pub struct Registered {
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = registry();
        r.paths.remove(&self.id);
        r.children.remove(&self.id);
    }
}

/// Registers a file or directory to remove if the process is interrupted. Register it
/// before creating it, and drop the registration once it is renamed or removed.
pub fn register(path: &Path) -> Registered {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry().paths.insert(id, path.to_path_buf());
    Registered { id }
}

/// Creates a temporary file or directory with `make` and registers it in the same step:
/// the registry stays locked meanwhile, so a signal arriving in between waits and then
/// removes it too (creating first and registering after left a window where it survived).
pub fn temp<T: AsRef<Path>>(
    make: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<(T, Registered)> {
    let mut r = registry();
    let made = make()?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    r.paths.insert(id, made.as_ref().to_path_buf());
    Ok((made, Registered { id }))
}

/// Spawns `cmd` and registers the child in the same step (see [`temp`]): a helper started
/// just before a signal is killed too, so it cannot recreate its output after the clean-up.
pub fn spawn(
    cmd: &mut std::process::Command,
) -> std::io::Result<(std::process::Child, Registered)> {
    let mut r = registry();
    let child = cmd.spawn()?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    r.children.insert(id, child.id());
    Ok((child, Registered { id }))
}

/// Catches SIGINT, SIGTERM and SIGHUP while alive; dropping it stops the catching.
pub struct Watch {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Starts the thread that cleans up and exits on a signal.
    pub fn install() -> Result<Watch> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .context("installing the interrupt handler")?;
        let handle = signals.handle();
        let thread = std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let r = registry();
                clean_up(&r);
                crate::error!("interrupted: removed the temporary files");
                std::process::exit(128 + sig);
            }
        });
        Ok(Watch {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Watch {
    /// Waits for the thread to end: it closes the iterator's socket pair (often fds 3 and 4)
    /// on its way out, and an action that pulled then puts its Plan at fd 3 for the
    /// starter. Returning before that close raced it: the starter sometimes found fd 3
    /// closed ("reading the plan from fd 3: Bad file descriptor").
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn clean_up(r: &Registry) {
    for &pid in r.children.values() {
        stop_child(pid);
    }
    // Newest first: a temp file inside a registered temp directory goes before it.
    for path in r.paths.values().rev() {
        remove_path(path);
    }
}

/// SIGKILL then reap. If the main thread reaps it first, waitpid fails with ECHILD, and
/// the process is gone either way.
fn stop_child(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else { return };
    let pid = Pid::from_raw(raw);
    if kill(pid, Signal::SIGKILL).is_ok() {
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// Removes a file or a whole tree, making directories writable first (image trees can
/// hold read-only directories).
pub fn remove_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            use std::os::unix::fs::PermissionsExt;
            for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
                if entry.file_type().is_dir() {
                    let _ = std::fs::set_permissions(
                        entry.path(),
                        std::fs::Permissions::from_mode(0o700),
                    );
                }
            }
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_end_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let reg = register(&a);
        assert!(registry().paths.values().any(|p| p == &a));
        drop(reg);
        assert!(!registry().paths.values().any(|p| p == &a));
    }

    #[test]
    fn clean_up_removes_files_and_read_only_trees() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("squashfs-x.img");
        std::fs::write(&file, b"x").unwrap();
        let tree = dir.path().join("rootfs");
        std::fs::create_dir_all(tree.join("ro/sub")).unwrap();
        std::fs::write(tree.join("ro/sub/f"), b"y").unwrap();
        std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o500)).unwrap();
        let mut r = Registry::default();
        r.paths.insert(1, tree.clone());
        r.paths.insert(2, file.clone());
        r.paths.insert(3, dir.path().join("never-created"));
        clean_up(&r);
        assert!(!file.exists() && !tree.exists());
        assert!(dir.path().exists());
    }
}
