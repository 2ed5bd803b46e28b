//! `apptainer inspect`.

use super::{GlobalOpts, Unimplemented};
use anyhow::Result;

pub type Args = Unimplemented;

pub fn run(_args: Args, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("inspect")
}

pub type RunHelpArgs = Unimplemented;

pub fn run_help(_args: RunHelpArgs, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("run-help")
}
