//! The last restriction before exec: the seccomp programs compiled by build.rs. Installed
//! after no_new_privs and the privilege drop, so the filters also bind the container.

use crate::creds::User;
use crate::error::{sys as syserr, Result};
use crate::sys;

include!(concat!(env!("OUT_DIR"), "/filters.rs"));

/// Installs both filters. Taking `&User` means this cannot run before the drop.
pub fn apply(_user: &User) -> Result<()> {
    sys::seccomp_install(TTY).map_err(syserr("cannot install the tty seccomp filter"))?;
    sys::seccomp_install(MOUNT_API).map_err(syserr("cannot install the mount seccomp filter"))
}
