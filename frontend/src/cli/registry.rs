//! `apptainer registry login|logout|list`: credentials for OCI registries, kept in
//! `~/.apptainer/docker-config.json` (or `--authfile`), checked against the registry before
//! they are stored.

use super::GlobalOpts;
use crate::auth::session::Session;
use crate::auth::{self, file};
use crate::registry::auth::Credentials;
use anyhow::{bail, Context, Result};
use clap::{ArgAction, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Login to an OCI/Docker registry
    Login(LoginArgs),
    /// Logout from an OCI/Docker registry
    Logout(LogoutArgs),
    /// List all OCI credentials that are configured
    List(ListArgs),
}

/// The flags of `registry login` and `remote login`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoginArgs {
    /// username to authenticate with
    #[arg(short = 'u', long, env = "APPTAINER_LOGIN_USERNAME")]
    pub username: Option<String>,
    /// password / token to authenticate with
    #[arg(
        short = 'p',
        long,
        env = "APPTAINER_LOGIN_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// take password from standard input
    #[arg(long = "password-stdin", action = ArgAction::SetTrue)]
    pub password_stdin: bool,
    /// allow insecure login (plain HTTP)
    #[arg(short = 'i', long, env = "APPTAINER_LOGIN_INSECURE", value_parser = super::boolish(), action = ArgAction::SetTrue)]
    pub insecure: bool,
    /// path of the authentication file to use
    #[arg(long = "authfile", env = "APPTAINER_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// registry URI (docker://host or oras://host)
    pub uri: String,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// path of the authentication file to use
    #[arg(long = "authfile", env = "APPTAINER_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// registry URI (docker://host or oras://host)
    pub uri: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// path of the authentication file to use
    #[arg(long = "authfile", env = "APPTAINER_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
}

pub fn run(args: Args, _g: &GlobalOpts) -> Result<()> {
    match args.command {
        RegistryCommand::Login(a) => login(&a),
        RegistryCommand::Logout(a) => logout(&a.uri, a.authfile.as_deref()),
        RegistryCommand::List(a) => list(a.authfile.as_deref()),
    }
}

/// The registry host named by `docker://host`, `oras://host[/...]` or a bare host.
pub fn registry_host(uri: &str) -> Result<String> {
    let rest = match uri.split_once("://") {
        Some(("docker" | "oras", rest)) => rest,
        Some((t, _)) => {
            bail!("{uri:?}: registry login needs a docker:// or oras:// URI, not {t}://")
        }
        None => uri,
    };
    Ok(file::normalize_host(rest))
}

fn credentials_file(authfile: Option<&Path>) -> Result<PathBuf> {
    match authfile {
        Some(f) => Ok(f.to_path_buf()),
        None => auth::apptainer_config(),
    }
}

/// Asks for what the flags did not give, checks the login, stores it.
pub fn login(a: &LoginArgs) -> Result<()> {
    let host = registry_host(&a.uri)?;
    let username = match &a.username {
        Some(u) => u.clone(),
        None if a.password_stdin => bail!("--password-stdin needs --username"),
        None => auth::prompt_line("Username: ")?,
    };
    let password = if a.password_stdin {
        if a.password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut s = String::new();
        std::io::stdin()
            .take(64 << 10)
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        let s = s.trim_end_matches(['\r', '\n']).to_string();
        if s.is_empty() {
            bail!("no password on standard input");
        }
        s
    } else {
        match &a.password {
            Some(p) => p.clone(),
            None => auth::prompt_secret("Password / Token: ")?,
        }
    };
    verify(&host, &username, &password, a.insecure)?;
    let path = credentials_file(a.authfile.as_deref())?;
    if a.authfile.is_none() {
        file::private_dir(&auth::user_dir()?)?;
    }
    file::store(&path, &host, &username, &password)?;
    crate::info!("Token stored in {}", path.display());
    Ok(())
}

/// A `GET /v2/` with the credentials: a refused login is an error, nothing is stored.
fn verify(host: &str, username: &str, password: &str, insecure: bool) -> Result<()> {
    let api = if host == "docker.io" {
        "registry-1.docker.io"
    } else {
        host
    };
    let creds = Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    };
    let mut session = Session::new(api, None, false, creds, insecure);
    session.send(
        "GET",
        "",
        None,
        &crate::auth::session::Body::Empty,
        &format!("login to {host}"),
    )?;
    Ok(())
}

pub fn logout(uri: &str, authfile: Option<&Path>) -> Result<()> {
    let host = registry_host(uri)?;
    let path = credentials_file(authfile)?;
    if !file::remove(&path, &host)? {
        bail!(
            "not logged in to {host} (no credentials in {})",
            path.display()
        );
    }
    crate::info!("Logout succeeded");
    Ok(())
}

fn list(authfile: Option<&Path>) -> Result<()> {
    let path = credentials_file(authfile)?;
    print_logins(&file::list(&path)?);
    Ok(())
}

/// The table of stored logins (also `remote list`'s last part).
pub fn print_logins(logins: &[(String, String)]) {
    let rows: Vec<(String, String)> = logins
        .iter()
        .map(|(h, u)| (format!("docker://{h}"), u.clone()))
        .collect();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(3);
    println!("{:<w$}  USERNAME", "URI");
    for (uri, user) in rows {
        println!("{uri:<w$}  {user}");
    }
}
