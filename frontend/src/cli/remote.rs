//! `apptainer remote add|remove|use|list|status|login|logout`: cloud-service endpoints in
//! `remote.yaml` (the admin's `$SYSCONFDIR/remote.yaml`, then the user's
//! `~/.apptainer/remote.yaml` on top) and, for `docker://`/`oras://` URIs, the OCI registry
//! logins that `apptainer registry` manages.

use super::registry::{self as reg, LoginArgs};
use super::GlobalOpts;
use crate::auth::{self, file};
use anyhow::{bail, Context, Result};
use clap::{ArgAction, Subcommand};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: RemoteCommand,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add a new apptainer remote endpoint
    Add(AddArgs),
    /// Remove an existing apptainer remote endpoint
    Remove(NameArgs),
    /// Set remote endpoint to be used by default
    Use(NameArgs),
    /// List all apptainer remote endpoints, keyservers, and OCI credentials that are configured
    List(ListArgs),
    /// Check the status of the apptainer services at an endpoint, and your authentication token
    Status(StatusArgs),
    /// Login to an apptainer remote endpoint or an OCI/Docker registry using credentials
    Login(RemoteLoginArgs),
    /// Log out from an apptainer remote endpoint or an OCI/Docker registry
    Logout(LogoutArgs),
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// add the remote to the system configuration (root only)
    #[arg(short = 'g', long = "global", action = ArgAction::SetTrue)]
    pub global: bool,
    /// skip automatic login step
    #[arg(long = "no-login", action = ArgAction::SetTrue)]
    pub no_login: bool,
    /// path to the file holding the token
    #[arg(long = "tokenfile")]
    pub tokenfile: Option<PathBuf>,
    /// do not make the remote the default one
    #[arg(short = 'n', long = "no-default", action = ArgAction::SetTrue)]
    pub no_default: bool,
    /// allow connections over plain HTTP
    #[arg(short = 'i', long, action = ArgAction::SetTrue)]
    pub insecure: bool,
    pub name: String,
    pub uri: String,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// act on the system configuration (root only)
    #[arg(short = 'g', long = "global", action = ArgAction::SetTrue)]
    pub global: bool,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// path of the authentication file to use
    #[arg(long = "authfile", env = "APPTAINER_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RemoteLoginArgs {
    /// path to the file holding the token (remote endpoints)
    #[arg(long = "tokenfile")]
    pub tokenfile: Option<PathBuf>,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// path of the authentication file to use
    #[arg(long = "authfile", env = "APPTAINER_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    pub target: Option<String>,
}

/// One endpoint of remote.yaml (field names as the reference writes them).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Endpoint {
    #[serde(rename = "URI")]
    pub uri: String,
    #[serde(rename = "Token", default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(rename = "System", default)]
    pub system: bool,
    #[serde(rename = "Exclusive", default)]
    pub exclusive: bool,
    #[serde(rename = "Insecure", default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    #[serde(rename = "Keyservers", default, skip_serializing_if = "Vec::is_empty")]
    pub keyservers: Vec<serde_yaml::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A remote.yaml document.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RemoteFile {
    #[serde(rename = "Active", default, skip_serializing_if = "String::is_empty")]
    pub active: String,
    #[serde(rename = "Remotes", default)]
    pub remotes: BTreeMap<String, Endpoint>,
    #[serde(rename = "Credentials", default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<serde_yaml::Value>,
}

fn system_file() -> PathBuf {
    Path::new(conf::paths::SYSCONFDIR).join("remote.yaml")
}

fn user_file() -> Result<PathBuf> {
    Ok(auth::user_dir()?.join("remote.yaml"))
}

fn read_file(path: &Path) -> Result<RemoteFile> {
    match fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Ok(RemoteFile::default()),
        Ok(t) => serde_yaml::from_str(&t).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RemoteFile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes remote.yaml atomically, 0600 (it may hold tokens).
fn write_file(path: &Path, doc: &RemoteFile, mode: u32) -> Result<()> {
    let dir = path.parent().context("remote.yaml has no directory")?;
    file::private_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-remote-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(serde_yaml::to_string(doc)?.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The system remotes (marked System) with the user's on top; the user's Active wins.
fn merged() -> Result<RemoteFile> {
    let sys = read_file(&system_file())?;
    let user = read_file(&user_file()?)?;
    let mut out = RemoteFile {
        active: sys.active.clone(),
        ..Default::default()
    };
    for (name, mut ep) in sys.remotes {
        ep.system = true;
        out.remotes.insert(name, ep);
    }
    for (name, ep) in user.remotes {
        if out.remotes.get(&name).is_some_and(|e| e.system) {
            // A user entry of a system remote only carries the user's token.
            if let Some(sys_ep) = out.remotes.get_mut(&name) {
                sys_ep.token = ep.token;
            }
            continue;
        }
        out.remotes.insert(name, ep);
    }
    if !user.active.is_empty() {
        out.active = user.active;
    }
    Ok(out)
}

/// The file an edit goes to; `--global` needs root.
fn target_file(global: bool) -> Result<(PathBuf, u32)> {
    if global {
        if !nix::unistd::geteuid().is_root() {
            bail!("--global requires root privileges");
        }
        Ok((system_file(), 0o644))
    } else {
        Ok((user_file()?, 0o600))
    }
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    match args.command {
        RemoteCommand::Add(a) => add(&a),
        RemoteCommand::Remove(a) => remove(&a),
        RemoteCommand::Use(a) => use_remote(&a),
        RemoteCommand::List(a) => list(a.authfile.as_deref()),
        RemoteCommand::Status(a) => status(a.name.as_deref()),
        RemoteCommand::Login(a) => login(&a),
        RemoteCommand::Logout(a) => logout(&a),
    }
}

fn is_registry_uri(s: &str) -> bool {
    s.starts_with("docker://") || s.starts_with("oras://")
}

fn add(a: &AddArgs) -> Result<()> {
    if is_registry_uri(&a.uri) {
        bail!("{}: use apptainer registry login for OCI registries", a.uri);
    }
    if a.name.is_empty() || a.name.contains(char::is_whitespace) {
        bail!("invalid remote name {:?}", a.name);
    }
    if merged()?.remotes.contains_key(&a.name) {
        bail!("remote {} already exists", a.name);
    }
    let (path, mode) = target_file(a.global)?;
    let mut doc = read_file(&path)?;
    let token = match &a.tokenfile {
        Some(f) => read_token(f)?,
        None => String::new(),
    };
    let uri = a
        .uri
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    doc.remotes.insert(
        a.name.clone(),
        Endpoint {
            uri,
            token,
            system: a.global,
            insecure: a.insecure,
            ..Default::default()
        },
    );
    if !a.no_default {
        doc.active = a.name.clone();
    }
    write_file(&path, &doc, mode)?;
    crate::info!("Remote \"{}\" added.", a.name);
    if !a.no_default {
        crate::info!("Remote \"{}\" now in use.", a.name);
    }
    Ok(())
}

fn remove(a: &NameArgs) -> Result<()> {
    let all = merged()?;
    let Some(ep) = all.remotes.get(&a.name) else {
        bail!("remote {} not found", a.name);
    };
    if ep.system && !a.global {
        bail!(
            "remote {} is a system remote: remove it with --global as root",
            a.name
        );
    }
    let (path, mode) = target_file(a.global)?;
    let mut doc = read_file(&path)?;
    doc.remotes.remove(&a.name);
    if doc.active == a.name {
        doc.active.clear();
    }
    write_file(&path, &doc, mode)?;
    crate::info!("Remote \"{}\" removed.", a.name);
    Ok(())
}

fn use_remote(a: &NameArgs) -> Result<()> {
    let all = merged()?;
    if !all.remotes.contains_key(&a.name) {
        bail!("remote {} not found", a.name);
    }
    let (path, mode) = target_file(a.global)?;
    let mut doc = read_file(&path)?;
    doc.active = a.name.clone();
    write_file(&path, &doc, mode)?;
    crate::info!("Remote \"{}\" now in use.", a.name);
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

fn list(authfile: Option<&Path>) -> Result<()> {
    let all = merged()?;
    println!("Cloud Services Endpoints");
    println!("========================");
    println!();
    let rows: Vec<[String; 6]> = all
        .remotes
        .iter()
        .map(|(name, ep)| {
            [
                name.clone(),
                ep.uri.clone(),
                yes(*name == all.active).into(),
                yes(ep.system).into(),
                yes(ep.exclusive).into(),
                yes(ep.insecure).into(),
            ]
        })
        .collect();
    print_table(
        &["NAME", "URI", "ACTIVE", "GLOBAL", "EXCLUSIVE", "INSECURE"],
        &rows,
    );
    println!();
    println!("Authenticated Logins");
    println!("====================");
    println!();
    let path = match authfile {
        Some(f) => f.to_path_buf(),
        None => auth::apptainer_config()?,
    };
    reg::print_logins(&file::list(&path)?);
    Ok(())
}

fn print_table(header: &[&str], rows: &[[String; 6]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn named(name: Option<&str>) -> Result<(String, Endpoint)> {
    let all = merged()?;
    let name = match name {
        Some(n) => n.to_string(),
        None if !all.active.is_empty() => all.active.clone(),
        None => bail!("no remote in use: name one, or select one with apptainer remote use"),
    };
    match all.remotes.get(&name) {
        Some(ep) => Ok((name, ep.clone())),
        None => bail!("remote {name} not found"),
    }
}

/// Whether the endpoint answers at all (this build speaks to no cloud service).
fn status(name: Option<&str>) -> Result<()> {
    let (name, ep) = named(name)?;
    crate::info!("Checking status of remote: {name}");
    let scheme = if ep.insecure { "http" } else { "https" };
    let url = format!("{scheme}://{}/", ep.uri);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(10))
        .build();
    match agent.get(&url).call() {
        Ok(_) | Err(ureq::Error::Status(_, _)) => {
            println!("{name}: {} is reachable", ep.uri);
        }
        Err(ureq::Error::Transport(t)) => {
            bail!("remote {name}: cannot reach {}: {}", ep.uri, t.kind())
        }
    }
    if ep.token.is_empty() {
        println!("No authentication token set (logged out).");
    } else {
        println!("An authentication token is set (logged in).");
    }
    Ok(())
}

fn read_token(path: &Path) -> Result<String> {
    let t = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("{}: empty token file", path.display());
    }
    Ok(t)
}

fn login(a: &RemoteLoginArgs) -> Result<()> {
    if is_registry_uri(&a.login.uri) {
        return reg::login(&a.login);
    }
    let (name, _) = named(Some(&a.login.uri))?;
    let token = match (&a.tokenfile, &a.login.password) {
        (Some(f), _) => read_token(f)?,
        (None, Some(p)) => p.clone(),
        (None, None) => auth::prompt_secret("Access Token: ")?,
    };
    set_token(&name, token)?;
    crate::info!("Token stored in {}", user_file()?.display());
    Ok(())
}

/// Keeps `token` for remote `name` in the user's remote.yaml (also for system remotes).
fn set_token(name: &str, token: String) -> Result<()> {
    let all = merged()?;
    let path = user_file()?;
    let mut doc = read_file(&path)?;
    let ep = doc
        .remotes
        .entry(name.to_string())
        .or_insert_with(|| all.remotes.get(name).cloned().unwrap_or_default());
    ep.token = token;
    write_file(&path, &doc, 0o600)
}

fn logout(a: &LogoutArgs) -> Result<()> {
    match a.target.as_deref() {
        Some(t) if is_registry_uri(t) => reg::logout(t, a.authfile.as_deref()),
        t => {
            let (name, ep) = named(t)?;
            if ep.token.is_empty() {
                bail!("not logged in to remote {name}");
            }
            set_token(&name, String::new())?;
            crate::info!("Logout succeeded");
            Ok(())
        }
    }
}
