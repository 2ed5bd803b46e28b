//! Instances: containers that keep running in the background under a name
//! (`instance start|run|stop|list|stats`) and that later commands join
//! (`exec|run|shell instance://NAME`).
//!
//! Shape: `start` builds the usual launch Plan marked `instance`, starts the starter detached
//! (its own session, stdout/stderr to the log files), waits until the starter's instance init
//! (`appinit`, the process that stays up after the startscript and whose namespaces are
//! joined) is running, then records it in the state file. A join builds an ordinary Plan for
//! the instance's image with `join` set to that pid; the starter, not the frontend, decides
//! whether the pid really is an instance of the caller before entering its namespaces.

pub mod join;
pub mod list;
pub mod start;
pub mod state;
pub mod stats;
pub mod stop;
