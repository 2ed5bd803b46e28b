//! `apptainer exec|run|shell instance://NAME`: an ordinary Plan for the instance's image
//! (its environment, its action script), with `join` set to the instance init's pid and no
//! mounts of its own: the container is the instance's. The state file is untrusted; we
//! check the pid looks like the instance for friendlier errors, and the starter checks it
//! again itself, through a pidfd, before it enters any namespace.

use super::state::{process_is_instance, Places};
use crate::cli::GlobalOpts;
use crate::launch::{self, identity::Identity, Action, LaunchOptions};
use anyhow::{bail, Context, Result};

/// Runs `action` in instance `name`; on success the frontend is replaced by the starter.
pub fn launch(
    action: Action,
    name: &str,
    args: Vec<String>,
    mut opts: LaunchOptions,
    g: &GlobalOpts,
) -> Result<()> {
    let id = Identity::current()?;
    let places = Places::current(&id.name, id.uid)?;
    let file = places
        .read(name)
        .with_context(|| format!("no instance found with name {name}"))?;
    if !process_is_instance(file.pid, id.uid, &id.name, name) {
        places.remove(name);
        bail!("no instance found with name {name}");
    }
    // The instance decides: its starter (setuid or user namespace) and its namespaces.
    opts.userns = file.userns;
    opts.fakeroot = file.fakeroot;
    opts.writable = false;
    opts.writable_tmpfs = false;
    opts.hostname = None;
    opts.join = true;
    let mut prepared = launch::prepare(action, &file.image, args, opts, g)?;
    if prepared.starter.setuid == file.userns {
        bail!(
            "instance {name} was started with the {} starter, which is not available now",
            if file.userns {
                "user-namespace"
            } else {
                "setuid"
            }
        );
    }
    let plan = &mut prepared.plan;
    plan.join = Some(file.pid as u32);
    plan.mounts.clear();
    plan.namespaces = file.namespaces;
    plan.fakeroot = file.fakeroot;
    // Only the children of a process that joined a PID namespace are in it: the starter
    // then forks, as it does for an init shim.
    plan.init = file.namespaces.pid;
    launch::exec_prepared(prepared)
}
