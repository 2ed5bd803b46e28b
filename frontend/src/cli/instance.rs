//! `apptainer instance start|run|stop|list|stats`.

use super::{GlobalOpts, Unimplemented};
use anyhow::Result;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Initiates a named instance of a given container
    Start(Unimplemented),
    /// Initiates a named instance of a given container with its runscript
    Run(Unimplemented),
    /// Stop a named instance of a given container image
    Stop(Unimplemented),
    /// List all running and named Apptainer instances
    List(Unimplemented),
    /// Get stats for a named instance
    Stats(Unimplemented),
}

pub fn run(_c: Command, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("instance")
}
