//! `apptainer instance start|run|stop|list|stats` (apptainer-facts.md §1.2, §1.5): flags
//! only; the work is in `crate::instance`.

use super::actions::{launch_options, ActionFlags};
use super::{boolish, GlobalOpts};
use crate::instance::{self, list::Format};
use crate::launch::Action;
use anyhow::{bail, Result};
use clap::ArgAction;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Initiates a named instance of a given container
    Start(StartArgs),
    /// Initiates a named instance of a given container with its runscript
    Run(StartArgs),
    /// Stop a named instance of a given container image
    Stop(StopArgs),
    /// List all running and named Apptainer instances
    List(ListArgs),
    /// Get stats for a named instance
    Stats(StatsArgs),
}

/// `apptainer instance start [start options...] <container path> <instance name> [startscript args...]`
#[derive(clap::Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub flags: ActionFlags,
    /// write instance PID to the file with the given name
    #[arg(long = "pid-file", env = "APPTAINER_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// the container image: a SIF file, a sandbox directory or a URI
    pub image: String,
    /// the instance's name
    pub name: String,
    /// arguments given to the startscript (or runscript)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `apptainer instance stop [stop options...] [instance]`
#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// if running as root, stop instances belonging to user
    #[arg(short = 'u', long = "user", env = "APPTAINER_USER")]
    pub user: Option<String>,
    /// stop all user's instances
    #[arg(short = 'a', long = "all", env = "APPTAINER_ALL", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub all: bool,
    /// force kill instance
    #[arg(short = 'F', long = "force", env = "APPTAINER_FORCE", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub force: bool,
    /// signal sent to the instance
    #[arg(short = 's', long = "signal", env = "APPTAINER_SIGNAL")]
    pub signal: Option<String>,
    /// force kill non stopped instances after X seconds
    #[arg(short = 't', long = "timeout", default_value_t = 10)]
    pub timeout: u64,
    /// the instance's name (a glob pattern is accepted)
    pub name: Option<String>,
}

/// `apptainer instance list [list options...] [<instance name glob>]`
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// if running as root, list instances from "<username>"
    #[arg(short = 'u', long = "user", env = "APPTAINER_USER")]
    pub user: Option<String>,
    /// print structured json instead of list
    #[arg(short = 'j', long = "json", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub json: bool,
    /// display location of stdout and sterr log files for instances
    #[arg(short = 'l', long = "logs", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub logs: bool,
    /// list all instances of the user (the default here)
    #[arg(short = 'a', long = "all", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub all: bool,
    pub name: Option<String>,
}

/// `apptainer instance stats [stats options...] <instance name>`
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// if running as root, show stats for instances of "<username>"
    #[arg(short = 'u', long = "user", env = "APPTAINER_USER")]
    pub user: Option<String>,
    /// output results in JSON format
    #[arg(short = 'j', long = "json", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub json: bool,
    /// disable streaming (live update) of instance stats
    #[arg(long = "no-stream", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub no_stream: bool,
    pub name: String,
}

pub fn run(c: Command, g: &GlobalOpts) -> Result<()> {
    match c {
        Command::Start(a) => start(Action::Start, a, g),
        Command::Run(a) => start(Action::Run, a, g),
        Command::Stop(a) => stop(a),
        Command::List(a) => list(a),
        Command::Stats(a) => {
            let places = places(a.user.as_deref())?;
            instance::stats::stats(&places, &a.name, a.json, a.no_stream || a.json)
        }
    }
}

fn start(action: Action, a: StartArgs, g: &GlobalOpts) -> Result<()> {
    let opts = launch_options(a.flags)?;
    let req = instance::start::StartRequest {
        action,
        image: a.image,
        name: a.name,
        args: a.args,
        pid_file: a.pid_file,
    };
    instance::start::start(req, opts, g)
}

fn stop(a: StopArgs) -> Result<()> {
    let pattern = match (&a.name, a.all) {
        (Some(n), _) => n.clone(),
        (None, true) => "*".to_string(),
        (None, false) => bail!("invalid command: give an instance name or --all"),
    };
    let mut sig = match &a.signal {
        Some(s) => instance::stop::parse_signal(s)
            .map_err(|e| anyhow::anyhow!("could not convert stop signal: {e}"))?,
        None => nix::sys::signal::Signal::SIGINT,
    };
    if a.force {
        sig = nix::sys::signal::Signal::SIGKILL;
    }
    let places = places(a.user.as_deref())?;
    instance::stop::stop(&places, &pattern, sig, Duration::from_secs(a.timeout))
}

fn list(a: ListArgs) -> Result<()> {
    let format = match (a.json, a.logs) {
        (true, true) => bail!("more than one flags have been set"),
        (true, false) => Format::Json,
        (false, true) => Format::Logs,
        (false, false) => Format::Table,
    };
    let places = places(a.user.as_deref())?;
    instance::list::print(&places, a.name.as_deref().unwrap_or("*"), format)
}

fn places(user: Option<&str>) -> Result<instance::state::Places> {
    let me = crate::launch::identity::Identity::current()?;
    instance::list::places_for(user, &me.name, me.uid)
}
