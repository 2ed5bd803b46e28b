//! `apptainer`: the unprivileged frontend. It parses the command line, does all networking,
//! conversion and caching, and hands a launch Plan to the starter.

mod auth;
mod build;
mod cache;
mod cli;
mod convert;
mod deffile;
mod env;
mod gpu;
mod instance;
mod landlock;
mod launch;
mod log;
mod metadata;
mod oci;
mod oras;
mod pull;
mod registry;
mod sources;

use clap::Parser;

fn main() {
    let legacy = env::adopt_legacy_names();
    // `apptainer --version` works without a subcommand, as in the reference.
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("apptainer version {}", cli::APPTAINER_VERSION);
        return;
    }
    let cli = cli::Cli::parse();
    log::set_level(cli.global.message_level());
    log::set_colour(!cli.global.nocolor);
    for name in legacy {
        debug!("using legacy environment variable {name}");
    }
    if cli.global.version {
        println!("apptainer version {}", cli::APPTAINER_VERSION);
        return;
    }
    match cli::dispatch(cli) {
        Ok(()) => {}
        Err(e) => {
            if let Some(status) = e.downcast_ref::<cli::ExitStatus>() {
                std::process::exit(status.0);
            }
            log::fatal(format_args!("{e:#}"));
        }
    }
}
