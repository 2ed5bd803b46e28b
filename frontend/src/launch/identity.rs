//! Who is launching: uid, gid, groups, passwd entry, current directory; and the container's
//! /etc/passwd and /etc/group, which are the image's files plus the caller's entries (the
//! container process runs as the caller, whatever the image's USER says).

use anyhow::{Context, Result};
use nix::unistd::{Gid, Group, Uid, User};
use std::path::PathBuf;

/// The caller as the frontend sees it. The starter derives its own from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub name: String,
    pub gecos: String,
    /// Home directory from /etc/passwd (what the starter checks a home bind against).
    pub passwd_home: PathBuf,
    pub shell: String,
    pub cwd: PathBuf,
}

impl Identity {
    pub fn current() -> Result<Identity> {
        let uid = Uid::current();
        let user = User::from_uid(uid)
            .context("cannot read the passwd database")?
            .with_context(|| format!("uid {uid} has no passwd entry"))?;
        let groups = nix::unistd::getgroups().context("cannot read supplementary groups")?;
        Ok(Identity {
            uid: uid.as_raw(),
            gid: Gid::current().as_raw(),
            groups: groups.into_iter().map(Gid::as_raw).collect(),
            name: user.name,
            gecos: user.gecos.to_string_lossy().into_owned(),
            passwd_home: user.dir,
            shell: user.shell.to_string_lossy().into_owned(),
            cwd: std::env::current_dir().context("cannot read the current directory")?,
        })
    }

    /// The caller for the Plan's `validate`; `setuid` says which starter will run.
    pub fn caller(&self, setuid: bool) -> starter::plan::Caller {
        starter::plan::Caller {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
            home: self.passwd_home.clone(),
            cwd: self.cwd.clone(),
            setuid,
        }
    }
}

/// The minimal passwd used when the image's own file cannot be read by the frontend.
const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const BASE_GROUP: &str = "root:x:0:\n";

/// The container's /etc/passwd: the image's (or a minimal one) with the caller's entry
/// replaced or appended, its home being the home inside the container.
pub fn passwd_contents(image_passwd: Option<&str>, id: &Identity, home: &str) -> String {
    let base = image_passwd.unwrap_or(BASE_PASSWD);
    let mut out = String::with_capacity(base.len() + 128);
    for line in base.lines() {
        let uid_field = line.split(':').nth(2);
        if line.split(':').next() == Some(id.name.as_str())
            || uid_field == Some(&id.uid.to_string())
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let gecos = id.gecos.replace([':', '\n'], " ");
    out.push_str(&format!(
        "{}:x:{}:{}:{}:{}:{}\n",
        id.name, id.uid, id.gid, gecos, home, id.shell
    ));
    out
}

/// The container's /etc/group: the image's (or a minimal one) plus an entry for each of the
/// caller's groups that the image lacks, listing the caller as a member.
pub fn group_contents(image_group: Option<&str>, id: &Identity) -> String {
    let base = image_group.unwrap_or(BASE_GROUP);
    let mut out = String::new();
    let mut gids: Vec<u32> = std::iter::once(id.gid)
        .chain(id.groups.iter().copied())
        .collect();
    gids.dedup();
    for line in base.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let gid = fields.get(2).and_then(|g| g.parse::<u32>().ok());
        match gid {
            Some(g) if gids.contains(&g) && fields.len() == 4 => {
                gids.retain(|x| *x != g);
                out.push_str(&with_member(&fields, &id.name));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    for gid in gids {
        let name = Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_else(|| gid.to_string());
        out.push_str(&format!("{name}:x:{gid}:{}\n", id.name));
    }
    out
}

fn with_member(fields: &[&str], user: &str) -> String {
    let members = fields[3];
    if members.split(',').any(|m| m == user) {
        return fields.join(":");
    }
    let sep = if members.is_empty() { "" } else { "," };
    format!(
        "{}:{}:{}:{members}{sep}{user}",
        fields[0], fields[1], fields[2]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 27],
            name: "alice".into(),
            gecos: "Alice: A".into(),
            passwd_home: "/home/alice".into(),
            shell: "/bin/bash".into(),
            cwd: "/home/alice/w".into(),
        }
    }

    #[test]
    fn passwd_gets_the_caller_entry_once() {
        let image =
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1:1::/nope:/bin/false\nbin:x:2:2::/:/x\n";
        let out = passwd_contents(Some(image), &id(), "/home/alice");
        assert_eq!(
            out,
            "root:x:0:0:root:/root:/bin/sh\nbin:x:2:2::/:/x\nalice:x:1000:1000:Alice  A:/home/alice:/bin/bash\n"
        );
        assert!(passwd_contents(None, &id(), "/h").starts_with("root:x:0:0:"));
    }

    #[test]
    fn group_lists_the_caller_in_existing_groups_and_adds_missing_ones() {
        let image = "root:x:0:\nsudo:x:27:bob\n";
        let out = group_contents(Some(image), &id());
        assert!(out.starts_with("root:x:0:\nsudo:x:27:bob,alice\n"), "{out}");
        assert!(out.ends_with(":x:1000:alice\n"), "{out}");
    }
}
