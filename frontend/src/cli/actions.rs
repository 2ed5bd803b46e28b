//! `apptainer run|exec|shell|test`: the action commands.

use super::{GlobalOpts, Unimplemented};
use anyhow::Result;

pub type RunArgs = Unimplemented;
pub type ExecArgs = Unimplemented;
pub type ShellArgs = Unimplemented;
pub type TestArgs = Unimplemented;

pub fn run(_a: RunArgs, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("run")
}
pub fn exec(_a: ExecArgs, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("exec")
}
pub fn shell(_a: ShellArgs, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("shell")
}
pub fn test(_a: TestArgs, _g: &GlobalOpts) -> Result<()> {
    super::unimplemented("test")
}
