//! The one error type of the crate. Every variant renders as a single lower-case line, because
//! the starter and the CLI print it as is.

use std::io;

/// Everything that can go wrong reading or writing a SIF image.
#[derive(Debug, thiserror::Error)]
pub enum SifError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("truncated sif image: {0}")]
    Truncated(&'static str),
    #[error("invalid sif magic")]
    BadMagic,
    #[error("incompatible sif version")]
    BadVersion,
    #[error("invalid sif header: {0}")]
    BadHeader(&'static str),
    #[error("invalid sif descriptor {id}: {what}")]
    BadDescriptor { id: u32, what: &'static str },
    #[error("sif objects {a} and {b} overlap")]
    Overlap { a: u32, b: u32 },
    #[error("no objects in image")]
    NoObjects,
    #[error("object not found")]
    ObjectNotFound,
    #[error("no primary system partition in image")]
    NoPrimaryPartition,
    #[error("insufficient descriptor capacity")]
    InsufficientCapacity,
    #[error("image already contains a primary partition")]
    PrimaryPartitionExists,
    #[error("data object not a system partition")]
    NotSystemPartition,
    #[error("data object not a partition")]
    NotPartition,
    #[error("launch script too large")]
    LaunchScriptTooLarge,
    #[error("name value too large")]
    NameTooLarge,
    #[error("extra value too large")]
    ExtraTooLarge,
    #[error("unknown architecture")]
    UnknownArch,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("value out of range: {0}")]
    Overflow(&'static str),
}
