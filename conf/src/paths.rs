//! Install locations, fixed when the workspace is built (`APPTAINER_PREFIX`, see build.rs).

/// The install prefix, e.g. `/usr/local`.
pub const PREFIX: &str = env!("APPTAINER_PREFIX");
/// Directory of the admin's files: apptainer.conf, capability.json, remote.yaml, ...
pub const SYSCONFDIR: &str = env!("APPTAINER_SYSCONFDIR");
/// The one apptainer.conf the starter trusts.
pub const CONF_FILE: &str = env!("APPTAINER_CONF_FILE");
/// Holds `bin/starter` and `bin/starter-suid`.
pub const LIBEXECDIR: &str = env!("APPTAINER_LIBEXECDIR");
