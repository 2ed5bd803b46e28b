//! Strict parser for apptainer.conf text.
//!
//! The syntax is the reference's: one `key = value` per line, `#` starts a comment line, blank
//! lines are ignored, a directive with an empty value is treated as absent, and list
//! directives take comma-separated values and may repeat. Unlike the reference, anything
//! else is an error naming the line: an unknown key (a typo would silently keep a default),
//! a single-valued key set twice, and any value outside the directive's type. Booleans are
//! exactly `yes` or `no`; numbers are plain unsigned decimals.
//!
//! List defaults (`bind path`) apply only when no file is read at all, as in the reference:
//! a parsed file that does not mention `bind path` binds nothing by default.
//!
//! No input makes this code panic: it indexes nothing, and numbers are parsed with overflow
//! checks. Its only caller-visible cost is linear in the input, which callers cap.

use std::path::{Component, Path, PathBuf};

use crate::directives::{
    BindPathEntry, Conf, EnableOverlay, EnableUnderlay, MemoryFsType, MountDev,
    RootDefaultCapabilities, SetuidMountSquashfs,
};
use crate::error::{echo, ConfError};

/// Every directive this parser accepts, by its canonical name, in the order of the shipped file.
pub const DIRECTIVES: &[&str] = &[
    "allow setuid",
    "max loop devices",
    "allow ipc ns",
    "allow pid ns",
    "allow user ns",
    "allow uts ns",
    "config passwd",
    "config group",
    "config resolv_conf",
    "mount proc",
    "mount sys",
    "mount dev",
    "mount devpts",
    "mount home",
    "mount tmp",
    "mount hostfs",
    "bind path",
    "user bind control",
    "enable fusemount",
    "enable overlay",
    "enable underlay",
    "mount slave",
    "sessiondir max size",
    "limit container owners",
    "limit container groups",
    "limit container paths",
    "allow container sif",
    "allow container encrypted",
    "allow container squashfs",
    "allow container extfs",
    "allow container dir",
    "allow setuid-mount encrypted",
    "allow setuid-mount squashfs",
    "allow setuid-mount extfs",
    "sync writable extfs",
    "allow net users",
    "allow net groups",
    "allow net networks",
    "allow netns paths",
    "always use nv",
    "use nvidia-container-cli",
    "always use rocm",
    "root default capabilities",
    "memory fs type",
    "cni configuration path",
    "cni plugin path",
    "binary path",
    "suidbinary path",
    "mksquashfs procs",
    "mksquashfs mem",
    "shared loop devices",
    "image driver",
    "download concurrency",
    "download part size",
    "download buffer size",
    "systemd cgroups",
    "apptheus communication socket path",
    "allow monitoring",
];

/// Directives that may repeat; their values accumulate in file order.
pub const LIST_DIRECTIVES: &[&str] = &[
    "bind path",
    "limit container owners",
    "limit container groups",
    "limit container paths",
    "allow net users",
    "allow net groups",
    "allow net networks",
    "allow netns paths",
];

/// The reference's template writes the apptheus directive under a shorter name than the one
/// its parser reads; both are accepted and count as the same directive.
const ALIASES: &[(&str, &str)] = &[("apptheus socket path", "apptheus communication socket path")];

/// What a bad value should have been; becomes the `must be ...` part of the error.
type Expected = &'static str;

/// Parses apptainer.conf `text`; `file` names it in errors. `echo_values` false keeps keys
/// and values out of error messages (for a file the caller could not read themselves).
pub fn parse_bytes(file: &str, text: &[u8], echo_values: bool) -> Result<Conf, ConfError> {
    let mut conf = Conf {
        bind_path: Vec::new(),
        ..Conf::default()
    };
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = index.saturating_add(1);
        let at = |e: LineError| e.into_conf_error(file, line, echo_values);
        let Ok(raw) = std::str::from_utf8(raw) else {
            return Err(ConfError::NotUtf8 {
                file: file.to_owned(),
                line,
            });
        };
        let Some((key, value)) = split_line(raw).map_err(at)? else {
            continue;
        };
        let key = canonical_key(key).map_err(at)?;
        if value.is_empty() {
            continue; // the reference treats `key =` as not set
        }
        if !LIST_DIRECTIVES.contains(&key) {
            if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(ConfError::DuplicateKey {
                    file: file.to_owned(),
                    line,
                    key,
                    first,
                });
            }
            seen.push((key, line));
        }
        apply(&mut conf, key, value).map_err(|expected| {
            at(LineError::BadValue {
                key,
                expected,
                value,
            })
        })?;
    }
    Ok(conf)
}

/// Parses apptainer.conf from a string; see [`parse_bytes`].
pub fn parse_str(file: &str, text: &str) -> Result<Conf, ConfError> {
    parse_bytes(file, text.as_bytes(), true)
}

/// A line-level failure before the file name and line number are attached.
enum LineError<'a> {
    Syntax,
    UnknownKey(&'a str),
    BadValue {
        key: &'static str,
        expected: Expected,
        value: &'a str,
    },
}

impl LineError<'_> {
    fn into_conf_error(self, file: &str, line: usize, echo_values: bool) -> ConfError {
        let shown = |s: &str| {
            if echo_values {
                echo(s)
            } else {
                "(not shown)".to_owned()
            }
        };
        let file = file.to_owned();
        match self {
            LineError::Syntax => ConfError::Syntax { file, line },
            LineError::UnknownKey(key) => ConfError::UnknownKey {
                file,
                line,
                key: shown(key),
            },
            LineError::BadValue {
                key,
                expected,
                value,
            } => ConfError::BadValue {
                file,
                line,
                key,
                expected,
                value: shown(value),
            },
        }
    }
}

/// Splits one line into trimmed key and value; `None` for blank and comment lines.
fn split_line(raw: &str) -> Result<Option<(&str, &str)>, LineError<'_>> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (key, value) = line.split_once('=').ok_or(LineError::Syntax)?;
    Ok(Some((key.trim(), value.trim())))
}

/// Maps a key to its canonical `&'static` name, or refuses it.
fn canonical_key(key: &str) -> Result<&'static str, LineError<'_>> {
    if let Some(&(_, canonical)) = ALIASES.iter().find(|(alias, _)| *alias == key) {
        return Ok(canonical);
    }
    DIRECTIVES
        .iter()
        .copied()
        .find(|d| *d == key)
        .ok_or(LineError::UnknownKey(key))
}

/// Stores one non-empty `value` of `key` into `conf`.
fn apply(conf: &mut Conf, key: &'static str, value: &str) -> Result<(), Expected> {
    let c = conf;
    match key {
        "allow setuid" => c.allow_setuid = yes_no(value)?,
        "max loop devices" => c.max_loop_devices = number(value)?,
        "allow ipc ns" => c.allow_ipc_ns = yes_no(value)?,
        "allow pid ns" => c.allow_pid_ns = yes_no(value)?,
        "allow user ns" => c.allow_user_ns = yes_no(value)?,
        "allow uts ns" => c.allow_uts_ns = yes_no(value)?,
        "config passwd" => c.config_passwd = yes_no(value)?,
        "config group" => c.config_group = yes_no(value)?,
        "config resolv_conf" => c.config_resolv_conf = yes_no(value)?,
        "mount proc" => c.mount_proc = yes_no(value)?,
        "mount sys" => c.mount_sys = yes_no(value)?,
        "mount dev" => c.mount_dev = mount_dev(value)?,
        "mount devpts" => c.mount_devpts = yes_no(value)?,
        "mount home" => c.mount_home = yes_no(value)?,
        "mount tmp" => c.mount_tmp = yes_no(value)?,
        "mount hostfs" => c.mount_hostfs = yes_no(value)?,
        "bind path" => c.bind_path.extend(list(value, bind_entry)?),
        "user bind control" => c.user_bind_control = yes_no(value)?,
        "enable fusemount" => c.enable_fusemount = yes_no(value)?,
        "enable overlay" => c.enable_overlay = enable_overlay(value)?,
        "enable underlay" => c.enable_underlay = enable_underlay(value)?,
        "mount slave" => c.mount_slave = yes_no(value)?,
        "sessiondir max size" => c.sessiondir_max_size = number(value)?,
        "limit container owners" => c.limit_container_owners.extend(list(value, name)?),
        "limit container groups" => c.limit_container_groups.extend(list(value, name)?),
        "limit container paths" => c.limit_container_paths.extend(list(value, abs_path)?),
        "allow container sif" => c.allow_container_sif = yes_no(value)?,
        "allow container encrypted" => c.allow_container_encrypted = yes_no(value)?,
        "allow container squashfs" => c.allow_container_squashfs = yes_no(value)?,
        "allow container extfs" => c.allow_container_extfs = yes_no(value)?,
        "allow container dir" => c.allow_container_dir = yes_no(value)?,
        "allow setuid-mount encrypted" => c.allow_setuid_mount_encrypted = yes_no(value)?,
        "allow setuid-mount squashfs" => c.allow_setuid_mount_squashfs = squashfs(value)?,
        "allow setuid-mount extfs" => c.allow_setuid_mount_extfs = yes_no(value)?,
        "sync writable extfs" => c.sync_writable_extfs = yes_no(value)?,
        "allow net users" => c.allow_net_users.extend(list(value, name)?),
        "allow net groups" => c.allow_net_groups.extend(list(value, name)?),
        "allow net networks" => c.allow_net_networks.extend(list(value, name)?),
        "allow netns paths" => c.allow_netns_paths.extend(list(value, abs_path)?),
        "always use nv" => c.always_use_nv = yes_no(value)?,
        "use nvidia-container-cli" => c.use_nvidia_container_cli = yes_no(value)?,
        "always use rocm" => c.always_use_rocm = yes_no(value)?,
        "root default capabilities" => c.root_default_capabilities = root_caps(value)?,
        "memory fs type" => c.memory_fs_type = memory_fs(value)?,
        "cni configuration path" => c.cni_configuration_path = Some(abs_path(value)?),
        "cni plugin path" => c.cni_plugin_path = Some(abs_path(value)?),
        "binary path" => c.binary_path = single(value)?.to_owned(),
        "suidbinary path" => c.suidbinary_path = Some(single(value)?.to_owned()),
        "mksquashfs procs" => c.mksquashfs_procs = number(value)?,
        "mksquashfs mem" => c.mksquashfs_mem = Some(single(value)?.to_owned()),
        "shared loop devices" => c.shared_loop_devices = yes_no(value)?,
        "image driver" => c.image_driver = Some(single(value)?.to_owned()),
        "download concurrency" => c.download_concurrency = number(value)?,
        "download part size" => c.download_part_size = number(value)?,
        "download buffer size" => c.download_buffer_size = number(value)?,
        "systemd cgroups" => c.systemd_cgroups = yes_no(value)?,
        "apptheus communication socket path" => c.apptheus_socket_path = abs_path(value)?,
        "allow monitoring" => c.allow_monitoring = yes_no(value)?,
        // Unreachable while DIRECTIVES and this match agree; a unit test checks that they do.
        _ => return Err("a known directive"),
    }
    Ok(())
}

fn yes_no(v: &str) -> Result<bool, Expected> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("yes or no"),
    }
}

/// A plain unsigned decimal. Leading zeros are refused because the reference reads `010` as
/// octal; accepting it with another meaning would be worse than refusing it.
fn number(v: &str) -> Result<u64, Expected> {
    const EXPECTED: Expected = "an unsigned decimal number without leading zeros";
    let digits_only = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (v.len() > 1 && v.starts_with('0')) {
        return Err(EXPECTED);
    }
    v.parse().map_err(|_| EXPECTED)
}

fn mount_dev(v: &str) -> Result<MountDev, Expected> {
    match v {
        "yes" => Ok(MountDev::Yes),
        "no" => Ok(MountDev::No),
        "minimal" => Ok(MountDev::Minimal),
        _ => Err("yes, no or minimal"),
    }
}

fn enable_overlay(v: &str) -> Result<EnableOverlay, Expected> {
    match v {
        "yes" => Ok(EnableOverlay::Yes),
        "no" => Ok(EnableOverlay::No),
        "try" => Ok(EnableOverlay::Try),
        "driver" => Ok(EnableOverlay::Driver),
        _ => Err("yes, no, try or driver"),
    }
}

fn enable_underlay(v: &str) -> Result<EnableUnderlay, Expected> {
    match v {
        "yes" => Ok(EnableUnderlay::Yes),
        "no" => Ok(EnableUnderlay::No),
        "preferred" => Ok(EnableUnderlay::Preferred),
        _ => Err("yes, no or preferred"),
    }
}

fn squashfs(v: &str) -> Result<SetuidMountSquashfs, Expected> {
    match v {
        "yes" => Ok(SetuidMountSquashfs::Yes),
        "no" => Ok(SetuidMountSquashfs::No),
        "iflimited" => Ok(SetuidMountSquashfs::IfLimited),
        _ => Err("yes, no or iflimited"),
    }
}

fn root_caps(v: &str) -> Result<RootDefaultCapabilities, Expected> {
    match v {
        "full" => Ok(RootDefaultCapabilities::Full),
        "file" => Ok(RootDefaultCapabilities::File),
        "no" => Ok(RootDefaultCapabilities::No),
        _ => Err("full, file or no"),
    }
}

fn memory_fs(v: &str) -> Result<MemoryFsType, Expected> {
    match v {
        "tmpfs" => Ok(MemoryFsType::Tmpfs),
        "ramfs" => Ok(MemoryFsType::Ramfs),
        _ => Err("tmpfs or ramfs"),
    }
}

/// A single-valued string. The reference silently keeps only the text before a comma; we
/// refuse the comma instead of guessing.
fn single(v: &str) -> Result<&str, Expected> {
    if v.contains(',') {
        return Err("a single value without commas");
    }
    Ok(v)
}

/// An absolute path without `.` or `..` components, so that later component-wise
/// comparisons mean what the admin wrote.
fn abs_path(v: &str) -> Result<PathBuf, Expected> {
    let v = single(v)?;
    let path = Path::new(v);
    let normal = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.is_absolute() || !normal || v.split('/').any(|c| c == ".") {
        return Err("an absolute path without \".\" or \"..\" components");
    }
    Ok(path.to_path_buf())
}

/// A user, group or network name: no blanks or control characters inside.
fn name(v: &str) -> Result<String, Expected> {
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a comma-separated list of names");
    }
    Ok(v.to_owned())
}

/// `source[:destination]`, both absolute. Mount options (`:ro`) are not part of this
/// directive's syntax, so a second colon is refused rather than read as part of a path.
fn bind_entry(v: &str) -> Result<BindPathEntry, Expected> {
    const EXPECTED: Expected = "a comma-separated list of absolute source[:destination] paths";
    let (source, destination) = match v.split_once(':') {
        Some((_, d)) if d.contains(':') => return Err(EXPECTED),
        Some((s, d)) => (s.trim(), d.trim()),
        None => (v, v),
    };
    let source = abs_path(source).map_err(|_| EXPECTED)?;
    let destination = abs_path(destination).map_err(|_| EXPECTED)?;
    Ok(BindPathEntry {
        source,
        destination,
    })
}

/// Splits a list value on commas, trims, drops empty items and converts each.
fn list<T>(v: &str, item: fn(&str) -> Result<T, Expected>) -> Result<Vec<T>, Expected> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(item)
        .collect()
}

#[cfg(test)]
mod tests;
