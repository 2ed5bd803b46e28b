//! The starter's one flat error type. Messages name the operation and the object as the user
//! gave it (`{:?}` so control characters are escaped), never contents of files.

use crate::sys::Errno;
use starter::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum StarterError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Conf(#[from] conf::ConfError),
    #[error("{what}: {}", strerror(*errno))]
    Sys { what: &'static str, errno: Errno },
    #[error("{what} {path:?}: {}", strerror(*errno))]
    Path { what: &'static str, path: String, errno: Errno },
    #[error("image {path:?}: {source}")]
    Sif { path: String, source: sif::SifError },
    #[error("image {path:?}: {why}")]
    Image { path: String, why: &'static str },
    #[error("{0}")]
    Refused(&'static str),
    #[error("{0} {1}")]
    Helper(&'static str, &'static str),
    #[error("{0:?}: executable file not found in $PATH")]
    NotInPath(String),
    #[error("privilege drop did not stick: {0}")]
    DropFailed(&'static str),
}

pub type Result<T> = std::result::Result<T, StarterError>;

/// The C library's text for `e` (nix's own table words some differently), as the reference
/// prints it.
pub fn strerror(e: Errno) -> String {
    let text = std::io::Error::from(e).to_string();
    text.split(" (os error").next().unwrap_or_default().to_owned()
}

/// Adds the operation name to an errno.
pub fn sys(what: &'static str) -> impl Fn(Errno) -> StarterError {
    move |errno| StarterError::Sys { what, errno }
}

/// Adds the operation and the path to an errno.
pub fn path<'a>(what: &'static str, p: &'a str) -> impl Fn(Errno) -> StarterError + 'a {
    move |errno| StarterError::Path { what, path: p.to_owned(), errno }
}
