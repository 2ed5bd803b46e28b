//! Singularity Image Format (SIF): reader (std + thiserror only, so the starter can link
//! it) and, behind the `write` feature, a writer. Byte-compatible with the reference
//! (`github.com/sylabs/sif/v2`); the layout is described in `shared/reference/sif-format.md`.

pub mod descriptor;
pub mod error;
pub mod header;
pub mod read;
pub mod types;
#[cfg(feature = "write")]
pub mod write;

pub use descriptor::{Descriptor, Link, PartitionMeta, SignatureMeta, DESCRIPTOR_SIZE, GROUP_MASK};
pub use error::SifError;
pub use header::{Header, HEADER_SIZE, ZERO_TIME};
pub use read::{primary_partition, Image, Partition};
pub use types::{Arch, DataType, FormatType, FsType, HashType, MessageType, PartType, SbomFormat};
