//! Where instances are recorded, as the reference keeps them:
//! `~/.apptainer/instances/app/HOST/USER/NAME/NAME.json` (state) and
//! `~/.apptainer/instances/logs/HOST/USER/NAME.{out,err}` (the instance's stdout/stderr).
//! The files live in the caller's home, so anybody who can write there (the caller, a
//! compromised job) may have edited them: everything read back is bounded, checked for
//! shape, and the recorded pid is only believed after `process_is_instance` looked at the
//! live process. The starter re-checks the pid itself before joining it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use starter::plan::Namespaces;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Larger state files are not ours: refuse them instead of reading them whole.
const MAX_STATE_BYTES: u64 = 64 * 1024;
/// What the instance processes show in `ps` (the reference's `ProgPrefix`); `list` uses it
/// to tell a live instance from a recycled pid.
pub const PROC_PREFIX: &str = "Apptainer instance";

/// One instance's state file. Field names are the reference's, so tools that read its JSON
/// keep working; `namespaces` and `fakeroot` are ours (what `exec instance://` must join).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceFile {
    /// The instance's init: the process whose namespaces are joined.
    pub pid: i32,
    /// The starter process the frontend started; gone once everything is cleaned up.
    pub ppid: i32,
    pub name: String,
    pub user: String,
    pub image: String,
    /// The reference stores its engine configuration here; we have none to keep.
    #[serde(default)]
    pub config: Option<String>,
    /// Started by the user-namespace starter (false: the setuid starter).
    pub userns: bool,
    pub cgroup: bool,
    pub ip: String,
    #[serde(rename = "logErrPath")]
    pub log_err_path: String,
    #[serde(rename = "logOutPath")]
    pub log_out_path: String,
    #[serde(default)]
    pub checkpoint: String,
    #[serde(default)]
    pub namespaces: Namespaces,
    #[serde(default)]
    pub fakeroot: bool,
}

/// The reference's rule for instance names (`^[a-zA-Z0-9._-]+$`); also what keeps a name
/// from naming another directory. `.` and `..` match it but are directories already.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("{name:?} is not a valid instance name");
    }
    Ok(())
}

/// The per-user instance directories on this host.
#[derive(Clone, Debug)]
pub struct Places {
    /// `.../instances/app/HOST/USER`
    pub app: PathBuf,
    /// `.../instances/logs/HOST/USER`
    pub logs: PathBuf,
    pub user: String,
    /// The owner's uid: state files and instance processes must be theirs.
    pub uid: u32,
}

impl Places {
    /// `$APPTAINER_CONFIGDIR` (as the reference's `syfs.ConfigDir`), else `~/.apptainer`.
    pub fn current(user: &str, uid: u32) -> Result<Places> {
        let config = match std::env::var_os("APPTAINER_CONFIGDIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => crate::cache::home_dir()?.join(".apptainer"),
        };
        Ok(Places::under(
            &config.join("instances"),
            &hostname()?,
            user,
            uid,
        ))
    }

    pub fn under(instances: &Path, host: &str, user: &str, uid: u32) -> Places {
        Places {
            app: instances.join("app").join(host).join(user),
            logs: instances.join("logs").join(host).join(user),
            user: user.to_string(),
            uid,
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.app.join(name)
    }

    pub fn json(&self, name: &str) -> PathBuf {
        self.dir(name).join(format!("{name}.json"))
    }

    /// `(NAME.out, NAME.err)`
    pub fn log_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.logs.join(format!("{name}.out")),
            self.logs.join(format!("{name}.err")),
        )
    }

    /// Names of the recorded instances matching `pattern` (a glob as the reference takes,
    /// `*` for all), sorted.
    pub fn names(&self, pattern: &str) -> Result<Vec<String>> {
        let matcher = glob::Pattern::new(pattern)
            .with_context(|| format!("invalid instance name pattern {pattern:?}"))?;
        let entries = match std::fs::read_dir(&self.app) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {:?}", self.app)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok() && matcher.matches(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads `name`'s state as untrusted input: no symlink, a regular file owned by the
    /// caller, bounded, well-formed, and describing the instance it is filed under.
    pub fn read(&self, name: &str) -> Result<InstanceFile> {
        check_name(name)?;
        let path = self.json(name);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .with_context(|| format!("no instance found with name {name}"))?;
        let meta = f.metadata()?;
        if !meta.is_file() || meta.uid() != self.uid {
            bail!("instance file {path:?} is not a regular file of yours");
        }
        let mut text = Vec::new();
        Read::by_ref(&mut f)
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut text)
            .with_context(|| format!("cannot read {path:?}"))?;
        if text.len() as u64 > MAX_STATE_BYTES {
            bail!("instance file {path:?} is too large");
        }
        let file: InstanceFile = serde_json::from_slice(&text)
            .with_context(|| format!("instance file {path:?} is malformed"))?;
        if file.name != name || file.user != self.user || file.pid <= 1 || file.ppid <= 1 {
            bail!("instance file {path:?} does not describe instance {name:?}");
        }
        Ok(file)
    }

    /// Writes `file` atomically (temporary file in the same directory, then rename), 0600.
    pub fn write(&self, file: &InstanceFile) -> Result<()> {
        let dir = self.dir(&file.name);
        make_private_dir(&dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".state-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a file in {dir:?}"))?;
        let json = serde_json::to_vec(file)?;
        tmp.write_all(&json)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.json(&file.name))
            .with_context(|| format!("cannot write {:?}", self.json(&file.name)))?;
        Ok(())
    }

    /// Forgets `name`: its state directory (the logs stay, as in the reference).
    pub fn remove(&self, name: &str) {
        if check_name(name).is_ok() {
            let _ = std::fs::remove_dir_all(self.dir(name));
        }
    }
}

/// The host's name as the reference's `os.Hostname` reads it.
pub fn hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name")?;
    let name = name.trim();
    if name.is_empty() || name.contains('/') {
        bail!("unusable host name {name:?}");
    }
    Ok(name.to_string())
}

/// Creates `dir` and its missing parents, 0700 (the reference's mode for these directories).
pub fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {dir:?}"))
}

/// The `ps` title of an instance's processes: `Apptainer instance: USER [NAME]`.
pub fn proc_title(user: &str, name: &str) -> String {
    format!("{PROC_PREFIX}: {user} [{name}]")
}

/// Whether process `pid` carries the title of instance `name` of `user`.
pub fn titled(pid: i32, user: &str, name: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|b| *b == 0).next() == Some(proc_title(user, name).as_bytes())
}

/// Whether the live process `pid` is the init of instance `name` of `user` (uid `uid`): its
/// title is the instance's, the starter named it `appinit`, and it runs as the caller. A
/// recycled pid, or a state file pointing elsewhere, fails this.
pub fn process_is_instance(pid: i32, uid: u32, user: &str, name: &str) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let uids: Vec<String> = field("Uid:").split_whitespace().map(String::from).collect();
    titled(pid, user, name)
        && field("Name:") == "appinit"
        && uids.len() == 4
        && uids.iter().all(|u| *u == uid.to_string())
}

/// Whether process `pid` exists and has not finished exiting (not a zombie). A dying process
/// loses its command line before it is a zombie, so `titled` alone cannot tell.
pub fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    state.is_some_and(|c| !matches!(c, 'Z' | 'X' | 'x'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> InstanceFile {
        InstanceFile {
            pid: 4242,
            ppid: 4241,
            name: name.into(),
            user: "u".into(),
            image: "/x.sif".into(),
            config: None,
            userns: true,
            cgroup: false,
            ip: String::new(),
            log_err_path: "/l/x.err".into(),
            log_out_path: "/l/x.out".into(),
            checkpoint: String::new(),
            namespaces: Namespaces::default(),
            fakeroot: false,
        }
    }

    #[test]
    fn names_follow_the_references_rule() {
        for ok in ["web", "a.b-c_1", "X"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", "x\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_round_trips_with_the_references_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let places = Places::under(dir.path(), "host", "u", nix::unistd::getuid().as_raw());
        places.write(&sample("web")).unwrap();
        let path = places.json("web");
        assert_eq!(
            path,
            dir.path().join("app/host/u/web/web.json"),
            "the reference's layout"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"logErrPath\":\"/l/x.err\""), "{text}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().mode() & 0o777,
            0o600,
            "private state"
        );
        assert_eq!(places.read("web").unwrap(), sample("web"));
        assert_eq!(places.names("*").unwrap(), ["web"]);
        assert_eq!(places.names("w?b").unwrap(), ["web"]);
        assert!(places.names("x*").unwrap().is_empty());
    }

    #[test]
    fn tampered_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let places = Places::under(dir.path(), "host", "u", nix::unistd::getuid().as_raw());
        // Filed under another name, or pointing at pid 1.
        let mut other = sample("other");
        places.write(&sample("web")).unwrap();
        other.name = "web".into();
        other.pid = 1;
        std::fs::write(places.json("web"), serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(places.read("web").is_err());
        std::fs::write(places.json("web"), vec![b' '; 70 * 1024]).unwrap();
        assert!(places.read("web").is_err());
        // A symlink instead of the file.
        std::fs::remove_file(places.json("web")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", places.json("web")).unwrap();
        assert!(places.read("web").is_err());
        assert!(places.read("../web").is_err());
    }

    #[test]
    fn this_test_process_is_not_an_instance() {
        let me = std::process::id() as i32;
        assert!(running(me));
        assert!(!process_is_instance(
            me,
            nix::unistd::getuid().as_raw(),
            "u",
            "x"
        ));
    }
}
