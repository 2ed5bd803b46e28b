//! `apptainer config fakeroot --add|--remove|--enable|--disable USER`: manages the user's
//! range in /etc/subuid and /etc/subgid as the reference does. A new range is 65536 ids,
//! taken from the top of the 32-bit id space downwards (so it never collides with the
//! ranges distributions hand out from 100000 up); a disabled entry is kept with a `!`
//! prefix. Both files are rewritten through a temporary file and a rename. Root only.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Manage fakeroot user mappings entries (root user only)
    Fakeroot(FakerootArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("op").required(true).args(["add", "remove", "enable", "disable"])))]
pub struct FakerootArgs {
    /// add a fakeroot mapping entry for a user allowing him to use the fakeroot feature
    #[arg(short = 'a', long)]
    pub add: bool,
    /// remove the user fakeroot mapping entry preventing him to use the fakeroot feature
    #[arg(short = 'r', long)]
    pub remove: bool,
    /// enable a user fakeroot mapping entry allowing him to use the fakeroot feature
    #[arg(short = 'e', long)]
    pub enable: bool,
    /// disable a user fakeroot mapping entry preventing him to use the fakeroot feature
    /// (no `-d`: it is the global `--debug`)
    #[arg(long)]
    pub disable: bool,
    /// the user whose mapping to change
    pub user: String,
}

const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";
/// The size of a range the reference allocates and prefers.
const RANGE: u64 = 65536;
/// Highest start the reference allocates (the last two ranges of the 32-bit space are left).
const START_MAX: u64 = 4_294_967_296 - 131_072;
const START_MIN: u64 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Enable,
    Disable,
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    let ConfigCommand::Fakeroot(f) = args.command;
    if !nix::unistd::geteuid().is_root() {
        bail!("fakeroot configuration requires root privileges");
    }
    let op = match (f.add, f.remove, f.enable) {
        (true, _, _) => Op::Add,
        (_, true, _) => Op::Remove,
        (_, _, true) => Op::Enable,
        _ => Op::Disable,
    };
    let user = nix::unistd::User::from_name(&f.user)
        .ok()
        .flatten()
        .ok_or_else(|| {
            anyhow!(
                "could not retrieve user information for {}: unknown user",
                f.user
            )
        })?;
    let lookup = |name: &str| -> Option<u32> {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    };
    // Both files are computed before either is written, so a refusal changes nothing.
    let mut updates = Vec::new();
    for path in [SUBUID, SUBGID] {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("while opening {path}")),
        };
        let mut map = IdMapFile::parse(&text, &lookup);
        map.apply(op, &f.user, user.uid.as_raw(), path)
            .with_context(|| format!("while {} {}", op.verb(), f.user))?;
        if map.changed {
            updates.push((path, map.render()));
        }
    }
    for (path, text) in updates {
        write_atomic(Path::new(path), &text).with_context(|| format!("while writing {path}"))?;
    }
    Ok(())
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Add => "adding",
            Op::Remove => "removing",
            Op::Enable => "enabling",
            Op::Disable => "disabling",
        }
    }
}

/// One `user:start:count` line; lines with fewer fields are dropped on rewrite, as the
/// reference does.
#[derive(Debug, Clone)]
struct Entry {
    line: String,
    uid: Option<u32>,
    start: Option<u64>,
    count: Option<u64>,
}

impl Entry {
    fn valid(&self) -> bool {
        self.start.is_some() && self.count.is_some_and(|c| c > 0)
    }
}

/// /etc/subuid or /etc/subgid in memory.
#[derive(Debug)]
struct IdMapFile {
    entries: Vec<Entry>,
    changed: bool,
}

impl IdMapFile {
    fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<u32>) -> IdMapFile {
        let entries = text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                if fields.len() < 3 || fields[0].is_empty() {
                    return None;
                }
                let name = fields[0].trim_start_matches('!');
                let uid = name.parse().ok().or_else(|| lookup(name));
                Some(Entry {
                    line: line.to_string(),
                    uid,
                    start: fields[1].parse().ok(),
                    count: fields[2].parse().ok(),
                })
            })
            .collect();
        IdMapFile {
            entries,
            changed: false,
        }
    }

    /// The entry the reference uses for a user: one of exactly 65536 ids, else the largest
    /// bigger one.
    fn user_entry(&self, name: &str, uid: u32, file: &str) -> Result<usize> {
        let mine: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].uid == Some(uid) && self.entries[i].valid())
            .collect();
        if let Some(&i) = mine.iter().find(|&&i| self.entries[i].count == Some(RANGE)) {
            return Ok(i);
        }
        if let Some(&i) = mine
            .iter()
            .filter(|&&i| self.entries[i].count > Some(RANGE))
            .max_by_key(|&&i| self.entries[i].count)
        {
            return Ok(i);
        }
        if !mine.is_empty() {
            bail!("mapping entries for user {name} found in {file} but all with a range count lower than {RANGE}");
        }
        bail!("no mapping entry found in {file} for {name}")
    }

    fn apply(&mut self, op: Op, name: &str, uid: u32, file: &str) -> Result<()> {
        match op {
            Op::Add => {
                if self.user_entry(name, uid, file).is_ok() {
                    return Ok(());
                }
                let start = self
                    .free_start()
                    .ok_or_else(|| anyhow!("no range available"))?;
                self.entries.push(Entry {
                    line: format!("{uid}:{start}:{RANGE}"),
                    uid: Some(uid),
                    start: Some(start),
                    count: Some(RANGE),
                });
                self.changed = true;
            }
            Op::Remove => {
                let i = self.user_entry(name, uid, file)?;
                self.entries.remove(i);
                self.changed = true;
            }
            Op::Enable => {
                let i = self.user_entry(name, uid, file)?;
                if let Some(rest) = self.entries[i].line.strip_prefix('!') {
                    self.entries[i].line = rest.to_string();
                    self.changed = true;
                }
            }
            Op::Disable => {
                let i = self.user_entry(name, uid, file)?;
                if !self.entries[i].line.starts_with('!') {
                    self.entries[i].line.insert(0, '!');
                    self.changed = true;
                }
            }
        }
        Ok(())
    }

    /// The highest range start, stepping down by 65536, that no valid entry covers.
    fn free_start(&self) -> Option<u64> {
        let mut start = START_MAX;
        while start >= START_MIN {
            let taken = self.entries.iter().filter(|e| e.valid()).any(|e| {
                let (s, c) = (e.start.unwrap_or(0), e.count.unwrap_or(0));
                start >= s && start < s + c
            });
            if !taken {
                return Some(start);
            }
            start -= RANGE;
        }
        None
    }

    fn render(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("{}\n", e.line))
            .collect()
    }
}

/// Replaces `path` through a temporary file beside it, keeping its mode and owner.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let (mode, uid, gid) = match fs::metadata(path) {
        Ok(m) => (m.mode() & 0o7777, Some(m.uid()), Some(m.gid())),
        Err(_) => (0o644, None, None),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".apptainer-")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    if uid.is_some() {
        std::os::unix::fs::chown(tmp.path(), uid, gid)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<u32> {
        match name {
            "alice" => Some(1000),
            "bob" => Some(1001),
            _ => None,
        }
    }

    #[test]
    fn add_takes_the_highest_free_range_and_is_idempotent() {
        let mut f = IdMapFile::parse("alice:100000:65536\n", &lookup);
        f.apply(Op::Add, "bob", 1001, SUBUID).unwrap();
        assert_eq!(f.render(), "alice:100000:65536\n1001:4294836224:65536\n");
        f.apply(Op::Add, "bob", 1001, SUBUID).unwrap();
        f.apply(Op::Add, "carol", 1002, SUBUID).unwrap();
        assert_eq!(
            f.render(),
            "alice:100000:65536\n1001:4294836224:65536\n1002:4294770688:65536\n"
        );
    }

    #[test]
    fn disable_enable_and_remove_edit_the_users_entry() {
        let mut f = IdMapFile::parse("alice:100000:65536\nbob:165536:65536\nbroken\n", &lookup);
        f.apply(Op::Disable, "alice", 1000, SUBUID).unwrap();
        assert_eq!(f.render(), "!alice:100000:65536\nbob:165536:65536\n");
        f.apply(Op::Enable, "alice", 1000, SUBUID).unwrap();
        f.apply(Op::Remove, "bob", 1001, SUBUID).unwrap();
        assert_eq!(f.render(), "alice:100000:65536\n");
        let err = f.apply(Op::Remove, "bob", 1001, SUBUID).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no mapping entry found in /etc/subuid for bob"
        );
    }

    #[test]
    fn a_range_smaller_than_65536_is_refused() {
        let mut f = IdMapFile::parse("alice:100000:1000\n", &lookup);
        let err = f.apply(Op::Disable, "alice", 1000, SUBUID).unwrap_err();
        assert!(err.to_string().contains("lower than 65536"), "{err}");
    }
}
