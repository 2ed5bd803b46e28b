//! Singularity Image Format (SIF): reader (std + thiserror only, so the starter can link
//! it) and, behind the `write` feature, a writer. Byte-compatible with the reference.
