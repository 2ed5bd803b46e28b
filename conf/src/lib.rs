//! apptainer.conf and the other admin-owned files, parsed strictly.
//!
//! The setuid starter links this crate, so it depends only on `std`, `thiserror` and `libc`
//! (for constants), reads no environment variable, contains no `unsafe`, caps every file it
//! reads, and does not panic on any input (non-test code is linted against unwrap, expect,
//! panics and indexing).
//!
//! # Public API
//!
//! apptainer.conf:
//! - [`load_trusted`]`(path) -> Result<`[`TrustedConf`]`, `[`ConfError`]`>`: for the setuid
//!   starter. Walks from `/` down; every directory and the file must be root-owned, not
//!   group/other-writable, not a symlink; the file regular and at most [`MAX_CONF_BYTES`].
//!   `TrustedConf` derefs to [`Conf`] and can only be made here.
//! - [`load`]`(path) -> Result<Conf, ConfError>`: the same parser without ownership checks,
//!   for the unprivileged frontend.
//! - [`parse_str`]`(name, text)` / [`parse_bytes`]`(name, bytes, echo_values)`: parse text.
//! - [`Conf`]: one public field per directive, typed ([`MountDev`], [`EnableOverlay`],
//!   [`EnableUnderlay`], [`SetuidMountSquashfs`], [`RootDefaultCapabilities`],
//!   [`MemoryFsType`], [`BindPathEntry`]); `Conf::default()` is the reference's defaults.
//!   Derived answers: [`Conf::may_kernel_mount_squashfs_setuid`],
//!   [`Conf::limits_containers`], [`Conf::container_path_allowed`],
//!   [`Conf::cni_configuration_dir`], [`Conf::cni_plugin_dir`].
//! - [`DIRECTIVES`] (every accepted key) and [`LIST_DIRECTIVES`] (those that may repeat).
//! - [`paths::CONF_FILE`]: the apptainer.conf path fixed at build time, with
//!   [`paths::PREFIX`], [`paths::SYSCONFDIR`], [`paths::LIBEXECDIR`].
//!
//! /etc/subuid and /etc/subgid:
//! - [`load_subids`]`(path)` and [`load_subids_trusted`]`(path) -> Result<`[`SubIds`]`,
//!   ConfError>`; [`SubIds::parse`]`(name, bytes)`.
//! - [`SubIds::lookup`]`(name, uid) -> Result<`[`SubIdRange`]`, `[`SubIdError`]`>`.
//! - [`SUBUID_FILE`], [`SUBGID_FILE`], [`MIN_SUBID_COUNT`].
//!
//! /etc/passwd and /etc/group (no NSS):
//! - [`load_accounts`]`(path)`, [`load_accounts_trusted`]`(path) -> Result<`[`Accounts`]`, ConfError>`;
//!   [`Accounts::by_id`], [`Accounts::ids_of`]; [`PASSWD_FILE`], [`GROUP_FILE`].
//!
//! Errors are one [`ConfError`] line naming the file, the line and the rule, e.g.
//! `/etc/apptainer/apptainer.conf:12: "allow setuid" must be yes or no, not "maybe"`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo
    )
)]

mod accounts;
mod directives;
mod error;
mod parse;
pub mod paths;
mod subid;
mod trusted;

pub use accounts::{
    load_accounts, load_accounts_trusted, Account, Accounts, GROUP_FILE, MAX_ACCOUNTS_BYTES,
    PASSWD_FILE,
};
pub use directives::{
    BindPathEntry, Conf, EnableOverlay, EnableUnderlay, MemoryFsType, MountDev,
    RootDefaultCapabilities, SetuidMountSquashfs, DEFAULT_BINARY_PATH,
};
pub use error::ConfError;
pub use parse::{parse_bytes, parse_str, DIRECTIVES, LIST_DIRECTIVES};
pub use subid::{
    load_subids, load_subids_trusted, SubIdEntry, SubIdError, SubIdOwner, SubIdRange, SubIds,
    MAX_SUBID_BYTES, MIN_SUBID_COUNT, SUBGID_FILE, SUBUID_FILE,
};
pub use trusted::{load, load_trusted, TrustedConf, MAX_CONF_BYTES};
