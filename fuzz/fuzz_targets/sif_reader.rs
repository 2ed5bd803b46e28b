//! The SIF reader on arbitrary bytes. The setuid starter reads the header and descriptors
//! of an image the caller wrote, so no input may panic, overflow, or allocate beyond the
//! file's length, and whatever `load` accepts must be internally consistent: every used
//! object lies inside the file, after the descriptor table, without overlapping another.
#![no_main]

use std::io::{Cursor, Read};

use libfuzzer_sys::fuzz_target;
use sif::{Descriptor, Header, Image, DESCRIPTOR_SIZE, HEADER_SIZE};

fuzz_target!(|data: &[u8]| {
    raw_parsers_round_trip(data);
    let partition = sif::primary_partition(&mut Cursor::new(data));
    let Ok(image) = Image::load(&mut Cursor::new(data)) else {
        assert!(
            partition.is_err(),
            "primary_partition accepted what load refused"
        );
        return;
    };
    check_header(image.header());
    check_objects(&image, data);
    check_primary(&image, partition);
});

/// `parse` decodes any bytes into a value that encodes and decodes to itself.
fn raw_parsers_round_trip(data: &[u8]) {
    if let Some(buf) = data.first_chunk::<HEADER_SIZE>() {
        if let Ok(h) = Header::parse(buf) {
            let again = Header::parse(&h.to_bytes()).expect("an encoded header parses");
            assert_eq!(again, h);
        }
    }
    if let Some(buf) = data.last_chunk::<DESCRIPTOR_SIZE>() {
        let d = Descriptor::parse(buf);
        assert_eq!(Descriptor::parse(&d.to_bytes()), d);
    }
}

fn check_header(h: &Header) {
    let _ = h.launch_script();
    let _ = h.arch();
    let _ = h.version_str();
    let _ = h.id_is_nil();
    assert_eq!(h.id_string().len(), 36, "uuid text form");
    let _ = h.is_deterministic();
}

/// Calls every accessor of every used descriptor and reads every object.
fn check_objects(image: &Image, data: &[u8]) {
    assert_eq!(image.file_len(), data.len() as u64);
    let mut ranges = Vec::new();
    for d in image.descriptors() {
        let _ = (d.group(), d.link(), d.name(), d.is_primary_partition());
        let _ = (d.partition(), d.signature(), d.crypto_message());
        let _ = (d.sbom_format(), d.oci_digest());
        let rel = image.relative_id(d);
        assert!(rel <= d.id);
        assert_eq!(d.integrity_bytes(rel).len(), 557);
        let end = d.end().expect("load accepted an overflowing object");
        assert!(d.offset >= 0 && d.size >= 0 && end as u64 <= image.file_len());
        if d.size > 0 {
            ranges.push((d.offset, end));
        }
        let Ok(found) = image.descriptor(d.id) else {
            // Only a header that claims no objects makes lookups fail.
            assert_eq!(
                image.header().descriptors_free,
                image.header().descriptors_total
            );
            continue;
        };
        assert_eq!(found, d, "ids are unique, so lookup finds this slot");
        let bytes = image
            .read_object(&mut Cursor::new(data), d.id)
            .expect("object inside the file");
        assert_eq!(bytes, &data[d.offset as usize..end as usize]);
        let mut streamed = Vec::new();
        image
            .object_reader(&mut Cursor::new(data), d.id)
            .expect("object inside the file")
            .read_to_end(&mut streamed)
            .expect("reading from memory");
        assert_eq!(streamed, bytes);
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "load accepted overlapping objects {w:?}");
    }
}

/// `primary_partition` agrees with `Image::primary_partition`.
fn check_primary(image: &Image, partition: Result<sif::Partition, sif::SifError>) {
    match (image.primary_partition(), partition) {
        (Some(d), Ok(p)) if d.partition().is_some() => {
            assert_eq!(
                (p.id, p.offset, p.size),
                (d.id, d.offset as u64, d.size as u64)
            );
            assert!(p
                .offset
                .checked_add(p.size)
                .is_some_and(|e| e <= image.file_len()));
        }
        (Some(d), Err(_)) => assert!(d.partition().is_none()),
        (None, Err(_)) => {}
        (d, p) => panic!("reader disagrees on the primary partition: {d:?} vs {p:?}"),
    }
}
