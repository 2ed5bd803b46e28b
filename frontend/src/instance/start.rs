//! `apptainer instance start|run`: launch detached, wait for the instance's init, record it.

use super::state::{
    check_name, make_private_dir, proc_title, process_is_instance, InstanceFile, Places,
};
use crate::cli::GlobalOpts;
use crate::launch::{self, identity::Identity, Action, LaunchOptions};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// What `instance start|run` was asked for, besides the launch options.
pub struct StartRequest {
    /// `Start` runs the startscript, `Run` the runscript.
    pub action: Action,
    pub image: String,
    pub name: String,
    pub args: Vec<String>,
    pub pid_file: Option<PathBuf>,
}

pub fn start(req: StartRequest, opts: LaunchOptions, g: &GlobalOpts) -> Result<()> {
    check_name(&req.name)?;
    let id = Identity::current()?;
    let places = Places::current(&id.name, id.uid)?;
    if !super::list::live(&places, &req.name)?.is_empty() {
        bail!("instance {} already exists", req.name);
    }
    let mut prepared = launch::prepare(req.action, &req.image, req.args, opts, g)?;
    prepared.plan.instance = true;
    let (out_path, err_path) = places.log_paths(&req.name);
    make_private_dir(&places.logs)?;
    let stdout = open_log(&out_path)?;
    let mut stderr = open_log(&err_path)?;
    let log_start = stderr.seek(SeekFrom::End(0))?;
    let json = serde_json::to_vec(&prepared.plan).context("cannot encode the launch plan")?;
    crate::debug!("instance plan: {}", String::from_utf8_lossy(&json));
    let title = proc_title(&id.name, &req.name);
    if let Some(e) = prepared.extracted.as_mut() {
        e.stop_catching_signals();
    }
    let mut child = launch::starter_exec::spawn_detached(
        &prepared.starter,
        &json,
        &title,
        stdout,
        stderr.try_clone()?,
    )?;
    // An extracted image goes once the instance's starter has exited.
    if let Some(e) = prepared.extracted.take() {
        e.remove_after_exit(child.id())?;
    }
    let ppid = child.id() as i32;
    let pid = loop {
        if let Some(pid) = find_init(&places, &req.name) {
            break pid;
        }
        if child.try_wait()?.is_some() {
            bail!(
                "failed to start instance {}: {}",
                req.name,
                last_error(&mut stderr, log_start)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let file = InstanceFile {
        pid,
        ppid,
        name: req.name.clone(),
        user: id.name.clone(),
        image: prepared.image_path.to_string_lossy().into_owned(),
        config: None,
        userns: !prepared.starter.setuid,
        cgroup: false,
        ip: String::new(),
        log_err_path: err_path.to_string_lossy().into_owned(),
        log_out_path: out_path.to_string_lossy().into_owned(),
        checkpoint: String::new(),
        namespaces: prepared.plan.namespaces,
        fakeroot: prepared.plan.fakeroot,
    };
    if let Err(e) = places.write(&file) {
        // Without its state nobody could find, join or stop it: do not leave it running.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        return Err(e);
    }
    if let Some(p) = &req.pid_file {
        write_pid_file(p, pid)?;
    }
    crate::info!("instance started successfully");
    Ok(())
}

/// The init of instance `name` of the caller, once the starter has started it.
fn find_init(places: &Places, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| process_is_instance(*pid, places.uid, &places.user, name))
}

/// Appends to the log `path`; never follows a symlink planted there.
fn open_log(path: &std::path::Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot open the instance log {path:?}"))
}

/// The starter's last message in the error log since `from`, without its level prefix.
fn last_error(log: &mut File, from: u64) -> String {
    let mut text = String::new();
    let _ = log.seek(SeekFrom::Start(from));
    let _ = log.take(64 * 1024).read_to_string(&mut text);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim_start_matches("FATAL:")
                .trim_start_matches("ERROR:")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "the starter exited without a message".into())
}

/// `--pid-file`: the pid and a newline, replacing the file; a symlink there is refused.
fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("could not create pid file {path:?}"))?;
    writeln!(f, "{pid}").with_context(|| format!("could not write pid file {path:?}"))
}
