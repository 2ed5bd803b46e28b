//! The `build` flags that only definition-file builds use.

use clap::ArgAction;

#[derive(clap::Args, Debug, Default)]
pub struct DefFlags {
    /// build without running tests in %test section
    #[arg(short = 'T', long = "notest", env = "APPTAINER_NOTEST", value_parser = crate::cli::boolish(), action = ArgAction::SetTrue)]
    pub notest: bool,
    /// only run specific section(s) of deffile (setup, post, files, environment, test, labels, none)
    #[arg(long = "section", value_delimiter = ',', env = "APPTAINER_SECTION")]
    pub section: Vec<String>,
    /// run definition over existing container (skips header)
    #[arg(short = 'u', long = "update", env = "APPTAINER_UPDATE", value_parser = crate::cli::boolish(), action = ArgAction::SetTrue)]
    pub update: bool,
    /// build using user namespace to fake root user (requires a privileged installation)
    #[arg(short = 'f', long = "fakeroot", env = "APPTAINER_FAKEROOT", value_parser = crate::cli::boolish(), action = ArgAction::SetTrue)]
    pub fakeroot: bool,
    /// a user-bind path specification: spec has the format src[:dest[:opts]] (only for %post and %test)
    #[arg(short = 'B', long = "bind", value_delimiter = ',')]
    pub bind: Vec<String>,
    /// during the %test section, makes the file system accessible as read-write with non persistent data
    #[arg(long = "writable-tmpfs", env = "APPTAINER_WRITABLE_TMPFS", value_parser = crate::cli::boolish(), action = ArgAction::SetTrue)]
    pub writable_tmpfs: bool,
    /// defines variable=value to replace {{ variable }} entries in build definition file
    #[arg(long = "build-arg", value_name = "var=value")]
    pub build_arg: Vec<String>,
    /// specifies a file containing variable=value lines to replace '{{ variable }}' with value in build definition files
    #[arg(long = "build-arg-file", value_name = "path")]
    pub build_arg_file: Option<std::path::PathBuf>,
    /// shows warning instead of fatal message when any variables are not consumed
    #[arg(long = "warn-unused-build-args", action = ArgAction::SetTrue)]
    pub warn_unused_build_args: bool,
}
