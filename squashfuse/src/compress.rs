//! Block decompression. gzip (a zlib stream, squashfs's default) goes through libdeflate,
//! which decodes whole buffers about twice as fast as zlib (inflate is nearly all of the
//! server's CPU time), and zstd through libzstd; both decode into a buffer of the caller's
//! bound, so a hostile block cannot make us allocate more than one block.
//! Other compressors are not decoded here: `main` hands such images to squashfuse_ll.

use crate::error::{Result, SqfsError};
use crate::superblock::Compressor;
use std::sync::Mutex;

/// A decoder for one image's compressor, with its state kept between blocks.
pub enum Decoder {
    Gzip(Mutex<libdeflater::Decompressor>),
    Zstd(Mutex<zstd::bulk::Decompressor<'static>>),
}

impl Decoder {
    /// A decoder for `c`, or `None` when this server cannot decode it.
    pub fn new(c: Compressor) -> Option<Decoder> {
        match c {
            Compressor::Gzip => Some(Decoder::Gzip(Mutex::new(libdeflater::Decompressor::new()))),
            Compressor::Zstd => zstd::bulk::Decompressor::new()
                .ok()
                .map(|d| Decoder::Zstd(Mutex::new(d))),
            Compressor::Lzma | Compressor::Lzo | Compressor::Xz | Compressor::Lz4 => None,
        }
    }

    /// Decompresses `input`, which must expand to at most `max` bytes; `what` names the
    /// kind of block in the error.
    pub fn decompress(&self, input: &[u8], max: usize, what: &'static str) -> Result<Vec<u8>> {
        let fail = || SqfsError::Decompress(what);
        match self {
            Decoder::Gzip(z) => {
                let mut z = z.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = vec![0u8; max];
                // A complete stream (checksum included) must end inside `max` bytes: anything
                // else (truncated input, or output that would not fit) is corrupt.
                let n = z.zlib_decompress(input, &mut out).map_err(|_| fail())?;
                out.truncate(n);
                Ok(out)
            }
            Decoder::Zstd(d) => {
                let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = Vec::with_capacity(max);
                d.decompress_to_buffer(input, &mut out)
                    .map_err(|_| fail())?;
                Ok(out)
            }
        }
    }
}
