//! Errors of the definition-file parser. Each one names the file and, when it comes from a
//! line of that file, the line, so a user can go straight to it: `my.def:7: unknown section "%psot"`.

use std::fmt;

/// A definition file the parser refuses, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line number, when the problem is on one line.
    pub line: Option<usize>,
    pub kind: DefErrorKind,
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}

impl std::error::Error for DefError {}

/// What is wrong. User strings are printed with `{:?}` so control characters are escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefErrorKind {
    #[error("empty definition file")]
    Empty,
    #[error("definition file is not valid UTF-8")]
    NotUtf8,
    #[error("header line {0:?} is not \"key: value\"")]
    HeaderWithoutColon(String),
    #[error("unknown header key {0:?}")]
    UnknownHeaderKey(String),
    #[error("{0:?} comes before \"Bootstrap:\"; each stage must start with a Bootstrap line")]
    MissingBootstrap(String),
    #[error("unknown bootstrap agent {0:?}")]
    UnknownAgent(String),
    #[error("bootstrap agent {0:?} needs a \"From:\" header")]
    MissingFrom(&'static str),
    #[error("empty stage name")]
    EmptyStageName,
    #[error("stage name {0:?} is used by an earlier stage")]
    DuplicateStageName(String),
    #[error("unknown section {0:?}")]
    UnknownSection(String),
    #[error("section \"%{0}\" needs an app name")]
    MissingAppName(&'static str),
    #[error("malformed %files arguments {0:?}: expected \"%files\" or \"%files from STAGE\"")]
    MalformedFilesArgs(String),
    #[error("%files from {0:?}: no earlier stage has that name")]
    FilesFromUndefinedStage(String),
    #[error("malformed %files line {0:?}: expected \"SOURCE [DESTINATION]\"")]
    MalformedFilesLine(String),
    #[error("build var {0} is not defined through either --build-arg (--build-arg-file) or 'arguments' section")]
    UndefinedBuildVar(String),
}

/// A `--build-arg` value that is not `KEY=VALUE` (the file form only warns, as the reference does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildArgError {
    #[error("--build-arg {0:?} is not a key=value pair")]
    NotKeyValue(String),
    #[error("--build-arg {0:?} has an empty key")]
    EmptyKey(String),
}
