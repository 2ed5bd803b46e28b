//! Opening a layer blob as an uncompressed tar stream.
//!
//! The compression is decided by the blob's magic bytes, not only by its media type:
//! docker-archive and some registries label uncompressed layers `tar.gzip` and the
//! reverse. A media type that is not a layer at all is refused, so a config blob or an
//! ORAS artifact is never read as a tar.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: [u8; 3] = *b"BZh";
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Large enough that decompressors read the file in big chunks.
const READ_BUFFER: usize = 256 * 1024;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Whether a media type names a filesystem layer (any compression).
pub fn is_layer_media_type(media_type: &str) -> bool {
    let m = media_type.to_ascii_lowercase();
    // Empty: docker-archive manifests name no media type for their layers.
    m.is_empty() || ((m.contains(".layer.") || m.contains(".diff.")) && m.contains(".tar"))
}

/// Decides the compression from the first bytes of the blob.
pub fn detect(head: &[u8], media_type: &str) -> Result<Compression> {
    if head.starts_with(&GZIP_MAGIC) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Ok(Compression::Zstd);
    }
    if head.starts_with(&BZIP2_MAGIC) || head.starts_with(&XZ_MAGIC) {
        bail!("layer compression is not supported (only gzip, zstd and uncompressed tar are)");
    }
    // An empty blob is a valid, empty layer; anything else must look like a tar header.
    if head.is_empty() || looks_like_tar(head) {
        return Ok(Compression::None);
    }
    bail!("layer of media type {media_type:?} is neither a tar archive nor gzip/zstd-compressed")
}

/// A tar header block has a checksum field we can verify without trusting any magic.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        // Shorter than one block: only an all-zero end marker is acceptable.
        return head.iter().all(|&b| b == 0);
    }
    let block = &head[..512];
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored
}

/// Reads a layer arriving as a stream (a download being followed) as uncompressed tar.
pub fn open_stream(
    mut stream: Box<dyn Read + Send>,
    media_type: &str,
) -> Result<Box<dyn Read + Send>> {
    if !is_layer_media_type(media_type) {
        bail!("blob of media type {media_type:?} is not an image layer");
    }
    let mut head = Vec::with_capacity(512);
    (&mut stream)
        .take(512)
        .read_to_end(&mut head)
        .context("reading a layer")?;
    let compression = detect(&head, media_type)?;
    let reader = BufReader::with_capacity(READ_BUFFER, std::io::Cursor::new(head).chain(stream));
    decompress(reader, compression)
}

fn decompress<R: std::io::BufRead + Send + 'static>(
    reader: R,
    compression: Compression,
) -> Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(reader),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            zstd::stream::read::Decoder::with_buffer(reader)
                .context("starting zstd decompression")?,
        )),
    })
}

/// Opens a layer blob and returns a reader of its uncompressed tar bytes.
pub fn open(path: &Path, media_type: &str) -> Result<Box<dyn Read + Send>> {
    if !is_layer_media_type(media_type) {
        bail!("blob of media type {media_type:?} is not an image layer");
    }
    let mut file = File::open(path).with_context(|| format!("opening layer {}", path.display()))?;
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .with_context(|| format!("reading layer {}", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    let reader = BufReader::with_capacity(READ_BUFFER, file);
    decompress(reader, detect(&head, media_type)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with_one_file() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "a", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn magic_bytes_decide_the_compression() {
        assert_eq!(
            detect(&[0x1f, 0x8b, 8], "x.tar").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            detect(&ZSTD_MAGIC, "x.tar+gzip").unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            detect(&tar_with_one_file(), "x.tar+gzip").unwrap(),
            Compression::None
        );
        assert_eq!(detect(&[], "x.tar").unwrap(), Compression::None);
    }

    #[test]
    fn garbage_and_unsupported_compressions_are_refused() {
        assert!(detect(&[b'x'; 600], "x.tar").is_err());
        assert!(detect(b"BZh91AY", "x.tar").is_err());
    }

    #[test]
    fn non_layer_media_types_are_refused() {
        assert!(is_layer_media_type(
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ));
        assert!(is_layer_media_type(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!is_layer_media_type(
            "application/vnd.oci.image.config.v1+json"
        ));
        assert!(!is_layer_media_type(
            "application/vnd.sylabs.sif.layer.v1.sif"
        ));
    }
}
