//! `apptainer version`: prints the bare version, as the reference does (`--version` adds
//! the "apptainer version" prefix; main.rs handles that flag).

use anyhow::Result;

pub fn run() -> Result<()> {
    println!("{}", super::APPTAINER_VERSION);
    Ok(())
}
