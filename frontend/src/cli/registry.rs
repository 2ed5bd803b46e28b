//! `apptainer registry`.

use super::{GlobalOpts, Unimplemented};
use anyhow::Result;

pub type Args = Unimplemented;

pub fn run(_args: Args, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("registry")
}
