//! The command line: global flags and one module per subcommand. Every flag that Apptainer
//! lets an environment variable set carries `env = "APPTAINER_<KEY>"` here.

use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand};

pub mod actions;
pub mod build;
pub mod cache;
pub mod config;
pub mod inspect;
pub mod instance;
pub mod overlay;
pub mod pull;
pub mod push;
pub mod registry;
pub mod remote;
pub mod sif;
pub mod version;

/// The version users and scripts see. We follow the reference's CLI of this release.
pub const APPTAINER_VERSION: &str = concat!("1.5.3+rs.", env!("CARGO_PKG_VERSION"));

#[derive(Parser, Debug)]
#[command(
    name = "apptainer",
    about = "Linux container platform optimized for High Performance Computing (HPC) and Enterprise Performance Computing (EPC)",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before (or after) any subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// print debugging information (highest verbosity)
    #[arg(short = 'd', long, global = true, env = "APPTAINER_DEBUG", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub debug: bool,
    /// print additional information
    #[arg(short = 'v', long, global = true, env = "APPTAINER_VERBOSE", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub verbose: bool,
    /// suppress normal output
    #[arg(short = 'q', long, global = true, env = "APPTAINER_QUIET", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub quiet: bool,
    /// only print errors
    #[arg(long, global = true, env = "APPTAINER_SILENT", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub silent: bool,
    /// `-s` is `--silent` only before the subcommand: the action commands use it for `--shell`.
    #[arg(short = 's', hide = true, action = ArgAction::SetTrue)]
    pub silent_short: bool,
    /// print without color
    #[arg(long, global = true, env = "APPTAINER_NOCOLOR", value_parser = boolish(), action = ArgAction::SetTrue)]
    pub nocolor: bool,
    /// print version information and exit
    #[arg(long = "version", global = true, action = ArgAction::SetTrue)]
    pub version: bool,
    /// specify a configuration file (for root or unprivileged installation only)
    #[arg(long = "config", global = true, env = "APPTAINER_CONFIG_FILE")]
    pub config: Option<std::path::PathBuf>,
    /// `-c` is `--config` only before the subcommand: the action commands use it for `--contain`.
    #[arg(short = 'c', hide = true, value_name = "config")]
    pub config_short: Option<std::path::PathBuf>,
}

/// Parses environment values such as `1`, `true`, `yes` for boolean flags.
pub fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

impl GlobalOpts {
    /// The message level these flags select, as Apptainer numbers them.
    pub fn message_level(&self) -> i32 {
        if self.debug {
            5
        } else if self.verbose {
            4
        } else if self.silent || self.silent_short {
            -3
        } else if self.quiet {
            -1
        } else {
            std::env::var("APPTAINER_MESSAGELEVEL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an Apptainer image
    Build(build::Args),
    /// Manage the local cache
    Cache(cache::Args),
    /// Manage various apptainer configuration (root user only)
    Config(config::Args),
    /// Run a command within a container
    Exec(actions::ExecArgs),
    /// Show metadata for an image
    Inspect(inspect::Args),
    /// Manage containers running as services
    #[command(subcommand)]
    Instance(instance::Command),
    /// Manage an EXT3 writable overlay image
    Overlay(overlay::Args),
    /// Pull an image from a URI
    Pull(pull::Args),
    /// Upload image to the provided URI
    Push(push::Args),
    /// Manage authentication to OCI/Docker registries
    Registry(registry::Args),
    /// Manage apptainer remote endpoints, keyservers and OCI/Docker registry credentials
    Remote(remote::Args),
    /// Run the user-defined default command within a container
    Run(actions::RunArgs),
    /// Show the user-defined help for an image
    #[command(name = "run-help")]
    RunHelp(inspect::RunHelpArgs),
    /// Run a shell within a container
    Shell(actions::ShellArgs),
    /// Manipulate Singularity Image Format (SIF) images
    #[command(alias = "siftool")]
    Sif(sif::Args),
    /// Run the user-defined tests within a container
    Test(actions::TestArgs),
    /// Show the version for Apptainer
    Version,
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> Result<()> {
    let mut g = cli.global;
    g.silent |= g.silent_short;
    if g.config.is_none() {
        g.config = g.config_short.take();
    }
    match cli.command {
        Command::Build(a) => build::run(a, &g),
        Command::Cache(a) => cache::run(a, &g),
        Command::Config(a) => config::run(a, &g),
        Command::Exec(a) => actions::exec(a, &g),
        Command::Inspect(a) => inspect::run(a, &g),
        Command::Instance(c) => instance::run(c, &g),
        Command::Overlay(a) => overlay::run(a, &g),
        Command::Pull(a) => pull::run(a, &g),
        Command::Push(a) => push::run(a, &g),
        Command::Registry(a) => registry::run(a, &g),
        Command::Remote(a) => remote::run(a, &g),
        Command::Run(a) => actions::run(a, &g),
        Command::RunHelp(a) => inspect::run_help(a, &g),
        Command::Shell(a) => actions::shell(a, &g),
        Command::Sif(a) => sif::run(a, &g),
        Command::Test(a) => actions::test(a, &g),
        Command::Version => version::run(),
    }
}

/// An error that carries the exit status to leave with and prints nothing more, e.g. the
/// status of a failed `%test`, or a message already printed.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitStatus(pub i32);
