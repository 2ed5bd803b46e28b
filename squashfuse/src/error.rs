//! The one error type of the squashfs reader. The image is untrusted input, so every
//! malformed structure becomes `Corrupt` naming what was wrong; the FUSE layer turns any
//! error into EIO for the request that hit it and keeps serving the rest of the image.

/// Why a read of the image failed.
#[derive(Debug, thiserror::Error)]
pub enum SqfsError {
    #[error("cannot read the image: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a squashfs image (bad magic)")]
    BadMagic,
    #[error("squashfs version {0}.{1} is not supported (only 4.0)")]
    Version(u16, u16),
    #[error("bad squashfs block size {0}")]
    BlockSize(u32),
    #[error("squashfs compressor {0} is not supported")]
    Compressor(u16),
    #[error("corrupt squashfs image: {0}")]
    Corrupt(&'static str),
    #[error("corrupt squashfs image: a {0} block does not decompress")]
    Decompress(&'static str),
}

/// Shorthand for the reader's results.
pub type Result<T> = std::result::Result<T, SqfsError>;
