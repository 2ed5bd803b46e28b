//! Where registry credentials come from, in the reference's order of precedence:
//! 1. `--docker-login` (asks for a username and password; nothing is stored),
//! 2. `--docker-username/--docker-password`, `APPTAINER_DOCKER_USERNAME/PASSWORD`, then
//!    `DOCKER_USERNAME/DOCKER_PASSWORD`,
//! 3. the file `apptainer registry login` writes (`~/.apptainer/docker-config.json`), or the
//!    `--authfile` given instead of it,
//! 4. `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`) `auths` entries, consulted for
//!    every registry the files above have nothing for (Apptainer ignored it as soon as its own
//!    file existed, a known pain point).

pub mod file;
pub mod session;

use crate::registry::auth::{CredentialStore, Credentials};
use anyhow::{bail, Context, Result};
use clap::ArgAction;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The credential flags of pull, push, build and the action commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// login to a Docker Repository interactively
    #[arg(long = "docker-login", env = "APPTAINER_DOCKER_LOGIN", value_parser = crate::cli::boolish(), action = ArgAction::SetTrue)]
    pub docker_login: bool,
    /// specify a username for docker authentication
    #[arg(
        long = "docker-username",
        hide = true,
        env = "APPTAINER_DOCKER_USERNAME"
    )]
    pub docker_username: Option<String>,
    /// specify a password for docker authentication
    #[arg(
        long = "docker-password",
        hide = true,
        env = "APPTAINER_DOCKER_PASSWORD",
        hide_env_values = true
    )]
    pub docker_password: Option<String>,
    /// path of the authentication file to use for OCI registries
    #[arg(long = "authfile", env = "APPTAINER_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
}

impl AuthArgs {
    /// The credential store these flags select; prompts now for `--docker-login`.
    pub fn store(&self) -> Result<Arc<dyn CredentialStore>> {
        Ok(Arc::new(Store {
            explicit: self.explicit()?,
            files: self.files()?,
        }))
    }

    /// `--docker-login`, else username and password from flags or the environment.
    fn explicit(&self) -> Result<Option<Credentials>> {
        if self.docker_login {
            let username = prompt_line("Enter Docker Username: ")?;
            let password = prompt_secret("Enter Docker Password: ")?;
            return Ok(Some(Credentials::Basic { username, password }));
        }
        let (user, pass, names) = match (&self.docker_username, &self.docker_password) {
            (None, None) => (
                non_empty_env("DOCKER_USERNAME"),
                non_empty_env("DOCKER_PASSWORD"),
                ("DOCKER_USERNAME", "DOCKER_PASSWORD"),
            ),
            (u, p) => (
                u.clone(),
                p.clone(),
                ("APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD"),
            ),
        };
        match (user, pass) {
            (None, None) => Ok(None),
            (Some(username), Some(password)) => {
                crate::debug!(
                    "using registry credentials of user {username:?} from {}",
                    names.0
                );
                Ok(Some(Credentials::Basic { username, password }))
            }
            (Some(_), None) => bail!("{} is set but {} is not", names.0, names.1),
            (None, Some(_)) => bail!("{} is set but {} is not", names.1, names.0),
        }
    }

    /// The credential files to consult, in order.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = vec![match &self.authfile {
            Some(f) => f.clone(),
            None => apptainer_config()?,
        }];
        files.push(docker_config()?);
        Ok(files)
    }
}

/// `~/.apptainer/docker-config.json`, where `registry login` stores credentials.
pub fn apptainer_config() -> Result<PathBuf> {
    Ok(user_dir()?.join("docker-config.json"))
}

/// `~/.apptainer` (created 0700 by whoever writes into it).
pub fn user_dir() -> Result<PathBuf> {
    Ok(crate::cache::home_dir()?.join(".apptainer"))
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    Ok(crate::cache::home_dir()?
        .join(".docker")
        .join("config.json"))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The credentials of one command: the explicit ones for every registry, else the files'.
pub struct Store {
    explicit: Option<Credentials>,
    files: Vec<PathBuf>,
}

impl CredentialStore for Store {
    fn credentials_for(&self, registry: &str) -> Credentials {
        if let Some(c) = &self.explicit {
            return c.clone();
        }
        for f in &self.files {
            match file::lookup(f, registry) {
                Ok(Some(c)) => {
                    crate::debug!("using credentials for {registry} from {}", f.display());
                    return c;
                }
                Ok(None) => {}
                Err(e) => crate::warning!("ignoring {}: {e:#}", f.display()),
            }
        }
        Credentials::Anonymous
    }
}

/// Reads one line after printing `prompt` on stderr.
pub fn prompt_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the username")?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        bail!("no username given");
    }
    Ok(line)
}

/// Reads a secret without echo on a terminal; from a pipe, one line of standard input.
pub fn prompt_secret(prompt: &str) -> Result<String> {
    let secret = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).context("reading the password")?
    } else {
        eprint!("{prompt}");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password")?;
        eprintln!();
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if secret.is_empty() {
        bail!("no password given");
    }
    Ok(secret)
}

/// The store for commands without credential flags (`run|exec|shell docker://...`): the
/// environment and the credential files. A half-set username/password pair is warned about
/// and ignored, so the files still apply.
pub fn environment_store() -> Arc<dyn CredentialStore> {
    let args = AuthArgs {
        docker_login: false,
        docker_username: non_empty_env("APPTAINER_DOCKER_USERNAME"),
        docker_password: non_empty_env("APPTAINER_DOCKER_PASSWORD"),
        authfile: std::env::var_os("APPTAINER_AUTH_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let explicit = args.explicit().unwrap_or_else(|e| {
        crate::warning!("{e:#}: ignoring these credentials");
        None
    });
    match args.files() {
        Ok(files) => Arc::new(Store { explicit, files }),
        Err(e) => {
            crate::warning!("no stored registry credentials: {e:#}");
            Arc::new(Store {
                explicit,
                files: Vec::new(),
            })
        }
    }
}
