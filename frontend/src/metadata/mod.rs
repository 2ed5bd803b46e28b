//! The `/.singularity.d` metadata every image carries: action scripts, environment
//! scripts, runscript, labels and the compatibility symlinks at `/`.
//!
//! The files are generated as bytes so a conversion can add them to its output stream
//! (never writing them into the user's filesystem first). Their behaviour follows the
//! reference's: the action scripts source `env/*.sh` in glob order and then exec the
//! right program; the runscript of an OCI image reproduces Docker's ENTRYPOINT/CMD rules
//! with the reference's evaluation semantics (see [`oci_runscript`]).

mod labels;
mod oci;
mod scripts;

pub use labels::{insert_build_labels, labels_json};
pub use oci::{docker_env_script, oci_runscript};
pub use scripts::{base_files, BASE_DIRS, ROOT_SYMLINKS};
/// The generated env scripts, which `launch::direct` evaluates without a shell.
pub use scripts::{
    ENV_01_BASE, ENV_90_ENVIRONMENT, ENV_94_APPSBASE, ENV_95_APPS, ENV_99_BASE, ENV_99_RUNTIMEVARS,
};
