//! /etc/subuid and /etc/subgid: the subordinate id ranges `--fakeroot` maps into a user
//! namespace.
//!
//! Each line is `name_or_uid:start:count`; extra fields are ignored. A leading `!` on the
//! first field disables the line without removing it (Apptainer's `config fakeroot
//! --disable`). Lines that do not parse (too few fields, a count of 0, a range running past
//! 2^32) are skipped rather than failing the file, because these files are shared with
//! shadow-utils and other tools. A range is usable for fakeroot only with at least
//! [`MIN_SUBID_COUNT`] ids.
//!
//! Lookup follows Apptainer: among the caller's lines, the first one with exactly 65536 ids
//! wins, else the largest larger one; a disabled winner is refused, and only smaller ranges
//! is its own error.
//!
//! In setuid mode the user's name must come from the starter's own lookup of the real uid,
//! never from the request: a name is what selects the range.

use std::path::Path;

use crate::error::ConfError;
use crate::trusted::{read_plain, read_trusted, shown};

/// Default location of the subordinate uid ranges.
pub const SUBUID_FILE: &str = "/etc/subuid";
/// Default location of the subordinate gid ranges.
pub const SUBGID_FILE: &str = "/etc/subgid";
/// Smallest range Apptainer accepts for fakeroot: a full 16-bit id space.
pub const MIN_SUBID_COUNT: u32 = 65_536;
/// Largest subuid/subgid file read (about half a million lines).
pub const MAX_SUBID_BYTES: u64 = 16 << 20;

/// Who a line belongs to, as written in its first field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubIdOwner {
    Uid(u32),
    Name(String),
}

/// One well-formed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubIdEntry {
    pub owner: SubIdOwner,
    /// First host id of the range.
    pub start: u32,
    /// Number of ids; at least 1, and `start + count <= 2^32`.
    pub count: u32,
    /// The line started with `!`.
    pub disabled: bool,
}

/// A usable range: host ids `start .. start + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// The parsed content of a subuid or subgid file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubIds {
    /// Name of the file, for error messages.
    pub file: String,
    /// The well-formed lines, in file order.
    pub entries: Vec<SubIdEntry>,
}

/// Why a user has no usable range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubIdError {
    #[error("{file}: no mapping entry for {user}")]
    NoEntry { file: String, user: String },
    #[error("{file}: the mapping entry for {user} has been disabled by the administrator")]
    Disabled { file: String, user: String },
    #[error("{file}: every mapping entry for {user} has fewer than {min} ids", min = MIN_SUBID_COUNT)]
    TooSmall { file: String, user: String },
}

impl SubIds {
    /// Parses file content; `file` names it in lookup errors. Never fails: bad lines are
    /// skipped (see the module header).
    pub fn parse(file: &str, text: &[u8]) -> SubIds {
        let entries = text.split(|&b| b == b'\n').filter_map(parse_line).collect();
        SubIds {
            file: file.to_owned(),
            entries,
        }
    }

    /// The range to map for the user `name` (if known) with `uid`.
    pub fn lookup(&self, name: Option<&str>, uid: u32) -> Result<SubIdRange, SubIdError> {
        let user = match name {
            Some(n) => format!("{n:?} (uid {uid})"),
            None => format!("uid {uid}"),
        };
        let mine = self.entries.iter().filter(|e| belongs_to(e, name, uid));
        let mut exact = None;
        let mut largest: Option<&SubIdEntry> = None;
        let mut any = false;
        for entry in mine {
            any = true;
            if entry.count == MIN_SUBID_COUNT {
                exact = Some(entry);
                break;
            }
            if entry.count > MIN_SUBID_COUNT && largest.is_none_or(|l| entry.count > l.count) {
                largest = Some(entry);
            }
        }
        let file = self.file.clone();
        match exact.or(largest) {
            Some(e) if e.disabled => Err(SubIdError::Disabled { file, user }),
            Some(e) => Ok(SubIdRange {
                start: e.start,
                count: e.count,
            }),
            None if any => Err(SubIdError::TooSmall { file, user }),
            None => Err(SubIdError::NoEntry { file, user }),
        }
    }
}

/// Reads a subuid/subgid file without ownership checks (frontend).
pub fn load_subids(path: impl AsRef<Path>) -> Result<SubIds, ConfError> {
    let path = path.as_ref();
    let bytes = read_plain(path, MAX_SUBID_BYTES)?;
    Ok(SubIds::parse(&shown(path), &bytes))
}

/// Reads a subuid/subgid file for the setuid starter, with the same root-ownership walk as
/// [`crate::load_trusted`].
pub fn load_subids_trusted(path: impl AsRef<Path>) -> Result<SubIds, ConfError> {
    let path = path.as_ref();
    let (bytes, _) = read_trusted(path, MAX_SUBID_BYTES)?;
    Ok(SubIds::parse(&shown(path), &bytes))
}

fn belongs_to(entry: &SubIdEntry, name: Option<&str>, uid: u32) -> bool {
    match &entry.owner {
        SubIdOwner::Uid(u) => *u == uid,
        SubIdOwner::Name(n) => Some(n.as_str()) == name,
    }
}

fn parse_line(raw: &[u8]) -> Option<SubIdEntry> {
    let line = std::str::from_utf8(raw).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = line.split(':');
    let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
    let (owner, disabled) = match owner.strip_prefix('!') {
        Some(rest) => (rest, true),
        None => (owner, false),
    };
    let start = decimal_u32(start)?;
    let count = decimal_u32(count).filter(|&c| c > 0)?;
    // A range past the top of the 32-bit id space cannot be written to uid_map.
    u64::from(start)
        .checked_add(u64::from(count))
        .filter(|&end| end <= 1 << 32)?;
    let owner = match decimal_u32(owner) {
        Some(uid) => SubIdOwner::Uid(uid),
        None if !owner.is_empty() => SubIdOwner::Name(owner.to_owned()),
        None => return None,
    };
    Some(SubIdEntry {
        owner,
        start,
        count,
        disabled,
    })
}

/// Digits only (no sign, no blanks), in range.
fn decimal_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
