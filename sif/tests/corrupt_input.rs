//! Hostile input: truncated, mutated and crafted images must give a `SifError`, never a
//! panic or an allocation sized by an unchecked count. A small deterministic generator
//! (xorshift) mutates the test images; every case is reproducible from its seed.

use std::io::Cursor;
use std::path::PathBuf;

use sif::{primary_partition, Image, SifError};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sif")
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(testdata().join(name)).unwrap()
}

/// Parses `bytes` through every reader entry point; returns the load result.
fn exercise(bytes: &[u8]) -> Result<(), SifError> {
    let _ = primary_partition(&mut Cursor::new(bytes));
    let mut c = Cursor::new(bytes);
    let img = Image::load(&mut c)?;
    let ids: Vec<u32> = img.descriptors().map(|d| d.id).collect();
    for id in ids {
        let d = img.descriptor(id)?;
        let _ = (
            d.partition(),
            d.signature(),
            d.crypto_message(),
            d.sbom_format(),
            d.oci_digest(),
            d.name(),
        );
        let data = img.read_object(&mut c, id)?;
        assert_eq!(data.len() as i64, d.size);
    }
    Ok(())
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_truncation_of_an_image_is_an_error_or_consistent() {
    let full = image("one-group.sif");
    // Every length inside header and table, then a stride through the data.
    let lens = (0..32_300).chain((32_300..full.len()).step_by(61));
    for len in lens {
        let r = exercise(&full[..len]);
        if len < 32_176 {
            assert!(r.is_err(), "truncated to {len} bytes was accepted");
        }
        if let Err(e) = r {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let names = [
        "one-group.sif",
        "two-groups-signed-pgp.sif",
        "one-object-sbom.sif",
        "one-group-signed-legacy-all.sif",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for name in names {
        let original = image(name);
        for _ in 0..400 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(8) {
                // Mostly hit the header and the used descriptors, where the numbers live.
                let at = match rng.below(3) {
                    0 => rng.below(128),
                    1 => 4096 + rng.below(5 * 585),
                    _ => rng.below(bytes.len()),
                };
                bytes[at] = match rng.below(4) {
                    0 => 0xff,
                    1 => 0,
                    2 => 0x80,
                    _ => rng.next() as u8,
                };
            }
            if rng.below(4) == 0 {
                let keep = rng.below(bytes.len());
                bytes.truncate(keep);
            }
            let _ = exercise(&bytes);
        }
    }
}

/// A change applied to an image's bytes.
type Mutation = Box<dyn Fn(&mut Vec<u8>)>;

fn put_i64(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn crafted_corruptions_give_one_line_errors() {
    let base = image("one-group.sif");
    let d2 = 4096 + 585; // second descriptor
    let cases: Vec<(&str, Mutation, &str)> = vec![
        ("bad magic", Box::new(|b| b[32] = b'X'), "invalid sif magic"),
        (
            "bad version",
            Box::new(|b| b[43] = b'2'),
            "incompatible sif version",
        ),
        (
            "absurd count",
            Box::new(|b| put_i64(b, 88, i64::MAX)),
            "descriptor count",
        ),
        (
            "negative count",
            Box::new(|b| put_i64(b, 88, -1)),
            "descriptor count",
        ),
        (
            "free > total",
            Box::new(|b| put_i64(b, 80, 49)),
            "free descriptor",
        ),
        (
            "table past eof",
            Box::new(|b| put_i64(b, 96, 1 << 40)),
            "truncated",
        ),
        (
            "table in header",
            Box::new(|b| put_i64(b, 96, 0)),
            "overlaps header",
        ),
        (
            "small table size",
            Box::new(|b| put_i64(b, 104, 585)),
            "truncated",
        ),
        (
            "object past eof",
            Box::new(move |b| put_i64(b, d2 + 25, 1 << 20)),
            "past end of file",
        ),
        (
            "offset overflow",
            Box::new(move |b| put_i64(b, d2 + 17, i64::MAX)),
            "overflows",
        ),
        (
            "negative size",
            Box::new(move |b| put_i64(b, d2 + 25, -5)),
            "negative",
        ),
        (
            "overlap",
            Box::new(move |b| put_i64(b, d2 + 17, 32768)),
            "overlap",
        ),
        (
            "in table",
            Box::new(move |b| put_i64(b, d2 + 17, 4096)),
            "descriptor table",
        ),
        (
            "duplicate id",
            Box::new(move |b| b[d2 + 5] = 1),
            "duplicate object id",
        ),
        ("id zero", Box::new(move |b| b[d2 + 5] = 0), "object id 0"),
    ];
    for (what, mutate, want) in cases {
        let mut b = base.clone();
        mutate(&mut b);
        let err = exercise(&b).expect_err(what).to_string();
        assert!(err.contains(want), "{what}: {err}");
        assert!(!err.contains('\n'), "{what}: {err}");
    }
}

#[test]
fn primary_partition_reads_only_header_and_table() {
    // Zero the object data region entirely: the answer must not depend on it.
    let mut b = image("two-groups.sif");
    let len = b.len();
    b[32_176..len].fill(0);
    let p = primary_partition(&mut Cursor::new(&b)).unwrap();
    assert_eq!((p.offset, p.size, p.id), (36_864, 4_096, 2));
    let none = image("one-object-sbom.sif");
    let err = primary_partition(&mut Cursor::new(&none)).unwrap_err();
    assert!(matches!(err, SifError::NoPrimaryPartition));
}
