//! The host's /etc/passwd and /etc/group, read directly: no NSS, so nothing loads code into
//! the setuid starter. Only what the starter needs: a uid's name and home directory (the
//! name selects the /etc/subuid range), and the ids of the names that `limit container
//! owners/groups` lists.
//!
//! Lines that do not parse are skipped; the first entry for an id or name wins.

use std::path::{Path, PathBuf};

use crate::error::ConfError;
use crate::trusted::{read_plain, read_trusted};

/// Default location of the host's accounts.
pub const PASSWD_FILE: &str = "/etc/passwd";
/// Default location of the host's groups.
pub const GROUP_FILE: &str = "/etc/group";
/// Largest passwd or group file read.
pub const MAX_ACCOUNTS_BYTES: u64 = 16 << 20;

/// One well-formed line: `name:x:id:...`, with the sixth field (home) of a passwd line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub id: u32,
    /// Empty for a group line.
    pub home: PathBuf,
}

/// The parsed entries of one passwd or group file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts(pub Vec<Account>);

impl Accounts {
    /// Parses file content; never fails (bad lines are skipped).
    pub fn parse(text: &[u8]) -> Accounts {
        let lines = text
            .split(|&b| b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok());
        Accounts(lines.filter_map(parse_line).collect())
    }

    /// The first entry with `id`.
    pub fn by_id(&self, id: u32) -> Option<&Account> {
        self.0.iter().find(|a| a.id == id)
    }

    /// The ids of `names`. An unknown name maps to no id, so when none is known the result
    /// is `[u32::MAX]`: a limit naming only unknown accounts allows nobody, instead of
    /// turning into no limit.
    pub fn ids_of(&self, names: &[String]) -> Vec<u32> {
        let find = |n: &String| self.0.iter().find(|a| a.name == *n).map(|a| a.id);
        let ids: Vec<u32> = names.iter().filter_map(find).collect();
        if ids.is_empty() && !names.is_empty() {
            vec![u32::MAX]
        } else {
            ids
        }
    }
}

/// Reads a passwd or group file without ownership checks (size-capped).
pub fn load_accounts(path: impl AsRef<Path>) -> Result<Accounts, ConfError> {
    Ok(Accounts::parse(&read_plain(
        path.as_ref(),
        MAX_ACCOUNTS_BYTES,
    )?))
}

/// Reads a passwd or group file for the setuid starter, with the root-ownership walk of
/// [`crate::load_trusted`].
pub fn load_accounts_trusted(path: impl AsRef<Path>) -> Result<Accounts, ConfError> {
    Ok(Accounts::parse(
        &read_trusted(path.as_ref(), MAX_ACCOUNTS_BYTES)?.0,
    ))
}

fn parse_line(line: &str) -> Option<Account> {
    let mut f = line.split(':');
    let name = f.next().filter(|n| !n.is_empty())?;
    let id = f.nth(1)?.parse().ok()?;
    let home = f.nth(2).unwrap_or("");
    Some(Account {
        name: name.to_owned(),
        id,
        home: PathBuf::from(home),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_name_id_and_home() {
        let a = Accounts::parse(
            b"root:x:0:0:root:/root:/bin/sh\nbad\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        );
        assert_eq!(
            a.by_id(1000).map(|a| (a.name.as_str(), a.home.as_path())),
            Some(("bob", Path::new("/home/bob")))
        );
        assert_eq!(a.0.len(), 2);
    }

    #[test]
    fn group_lines_have_no_home() {
        let a = Accounts::parse(b"wheel:x:10:bob\n");
        assert_eq!(
            a.0,
            [Account {
                name: "wheel".into(),
                id: 10,
                home: PathBuf::new()
            }]
        );
    }

    #[test]
    fn unknown_names_allow_nobody_and_known_ones_resolve() {
        let a = Accounts::parse(b"root:x:0:0::/root:/bin/sh\n");
        assert_eq!(a.ids_of(&["root".into(), "nobody-here".into()]), [0]);
        assert_eq!(a.ids_of(&["nobody-here".into()]), [u32::MAX]);
        assert!(a.ids_of(&[]).is_empty());
    }
}
