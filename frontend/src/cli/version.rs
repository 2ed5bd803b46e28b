//! `apptainer version` and `apptainer --version`.

use anyhow::Result;

pub fn run() -> Result<()> {
    println!("apptainer version {}", super::APPTAINER_VERSION);
    Ok(())
}
