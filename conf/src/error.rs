//! The one error type of this crate. Every message is a single lower-case line that names the
//! file (and line, for content errors) and the rule that refused it, so the starter can print
//! it as is.

use std::io;

/// Why an admin file could not be opened, trusted or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// A line that is neither blank, a `#` comment, nor `key = value`.
    #[error("{file}:{line}: expected \"key = value\", a comment or a blank line")]
    Syntax { file: String, line: usize },
    /// The line's bytes are not UTF-8.
    #[error("{file}:{line}: line is not valid UTF-8")]
    NotUtf8 { file: String, line: usize },
    /// A directive this version does not know (a typo would otherwise be silently ignored).
    #[error("{file}:{line}: unknown directive {key:?}")]
    UnknownKey {
        file: String,
        line: usize,
        key: String,
    },
    /// A single-valued directive set twice: which value wins would be a guess.
    #[error("{file}:{line}: {key:?} is already set on line {first}")]
    DuplicateKey {
        file: String,
        line: usize,
        key: &'static str,
        first: usize,
    },
    /// A value outside what the directive accepts.
    #[error("{file}:{line}: {key:?} must be {expected}, not {value:?}")]
    BadValue {
        file: String,
        line: usize,
        key: &'static str,
        expected: &'static str,
        value: String,
    },
    /// The operating system refused an operation on the file.
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: io::Error,
    },
    /// The file is larger than the cap; a config file never needs to be this big.
    #[error("{path}: larger than the limit of {max} bytes")]
    TooLarge { path: String, max: u64 },
    /// Trusted loading needs an absolute path without `.` or `..` components.
    #[error("{path}: must be an absolute path without \".\" or \"..\" components")]
    NotNormalAbsolute { path: String },
    /// A component of a trusted path is not owned by root.
    #[error("{path}: owned by uid {uid}, not by root")]
    NotRootOwned { path: String, uid: u32 },
    /// A component of a trusted path could be changed by someone other than root.
    #[error("{path}: writable by group or others (mode {mode:04o})")]
    WritableByOthers { path: String, mode: u32 },
    /// A component of a trusted path is a symbolic link.
    #[error("{path}: is a symbolic link, which is not allowed here")]
    Symlink { path: String },
    /// The last component is not a regular file.
    #[error("{path}: not a regular file")]
    NotRegularFile { path: String },
    /// An inner component is not a directory.
    #[error("{path}: not a directory")]
    NotDirectory { path: String },
}

/// Longest piece of a line echoed back in an error, so a hostile or corrupt file cannot
/// turn one error into megabytes of output.
const MAX_ECHO: usize = 80;

/// Shortens `s` for an error message, on a character boundary.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}
