//! The bytes signatures cover: the reader's integrity streams must equal the reference's
//! (`golden/integrity/sources`) and reproduce the digests inside the signed test images.

use std::fs::File;
use std::path::PathBuf;

use sif::Image;

mod common;
use common::sha256_hex;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sif")
}

fn load(name: &str) -> (Image, File) {
    let mut f = File::open(testdata().join(name)).unwrap();
    (Image::load(&mut f).unwrap(), f)
}

#[test]
fn header_stream_has_the_reference_layout() {
    let (image, _) = load("one-group-signed-legacy.sif");
    let want = std::fs::read(testdata().join("golden/integrity/sources/header.bin")).unwrap();
    let got = image.header().integrity_bytes();
    assert_eq!(got.len(), 61);
    // Same fields in the same places: launch script, magic, version, then a 16-byte ID.
    assert_eq!(got[..45], want[..45]);
}

#[test]
fn pgp_signature_digests_are_reproduced() {
    for name in ["one-group-signed-pgp.sif", "two-groups-signed-pgp.sif"] {
        let (image, mut f) = load(name);
        let header = format!("sha256:{}", sha256_hex(&image.header().integrity_bytes()));
        let sigs: Vec<_> = image
            .descriptors()
            .filter(|d| d.signature().is_some())
            .cloned()
            .collect();
        assert!(!sigs.is_empty());
        for sig in sigs {
            let text = String::from_utf8(image.read_object(&mut f, sig.id).unwrap()).unwrap();
            let json_line = text
                .lines()
                .find(|l| l.starts_with("{\"version\""))
                .unwrap();
            assert!(json_line.contains(&format!("\"header\":{{\"digest\":\"{header}\"}}")));
            let sif::Link::Group(g) = sig.link() else {
                panic!("signature not linked to a group")
            };
            for d in image.descriptors().filter(|d| d.group() == g) {
                let rid = image.relative_id(d);
                let dd = sha256_hex(&d.integrity_bytes(rid));
                let od = sha256_hex(&image.read_object(&mut f, d.id).unwrap());
                let entry = format!(
                    "{{\"relativeId\":{rid},\"descriptorDigest\":\"sha256:{dd}\",\"objectDigest\":\"sha256:{od}\"}}"
                );
                assert!(
                    json_line.contains(&entry),
                    "{name}: {entry} not in {json_line}"
                );
            }
        }
    }
}
