//! Reads every test image of `shared/testdata/sif` and compares header and descriptors with
//! `expected.json`, and the sha256 of every object's data with the recorded one.

use std::fs::File;
use std::path::PathBuf;

use serde_json::Value;
use sif::{DataType, Image, Link};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sif")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(testdata().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn uuid_string(id: &[u8; 16]) -> String {
    sif::header::format_uuid(id)
}

#[test]
fn every_image_matches_expected_json() {
    let exp = expected();
    let images = exp["images"].as_object().unwrap();
    assert_eq!(images.len(), 21);
    for (name, want) in images {
        let mut f = File::open(testdata().join(name)).unwrap();
        let image = Image::load(&mut f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let h = image.header();
        let wh = &want["header"];
        assert_eq!(
            image.file_len(),
            want["file_size"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            String::from_utf8_lossy(h.launch_script()),
            wh["launch_script"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(h.version_str(), wh["version"].as_str().unwrap());
        assert_eq!(h.arch().go_name(), wh["arch"].as_str().unwrap(), "{name}");
        assert_eq!(uuid_string(&h.id), wh["id"].as_str().unwrap(), "{name}");
        for (field, got) in [
            ("created_at", h.created_at),
            ("modified_at", h.modified_at),
            ("descriptors_free", h.descriptors_free),
            ("descriptors_total", h.descriptors_total),
            ("descriptors_offset", h.descriptors_offset),
            ("descriptors_size", h.descriptors_size),
            ("data_offset", h.data_offset),
            ("data_size", h.data_size),
        ] {
            assert_eq!(got, wh[field].as_i64().unwrap(), "{name} {field}");
        }
        let wds = want["descriptors"].as_array().unwrap();
        let got: Vec<_> = image.descriptors().collect();
        assert_eq!(got.len(), wds.len(), "{name}");
        for (d, wd) in got.iter().zip(wds) {
            check_descriptor(name, &image, &mut f, d, wd);
        }
    }
}

fn check_descriptor(name: &str, image: &Image, f: &mut File, d: &sif::Descriptor, wd: &Value) {
    let ctx = format!("{name} id {}", d.id);
    assert_eq!(u64::from(d.id), wd["id"].as_u64().unwrap(), "{ctx}");
    assert_eq!(
        i64::from(d.data_type.raw()),
        wd["type"].as_i64().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        d.data_type.to_string(),
        wd["type_name"].as_str().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        u64::from(d.group_raw),
        wd["group_raw"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(u64::from(d.group()), wd["group"].as_u64().unwrap(), "{ctx}");
    assert_eq!(
        u64::from(d.link_raw),
        wd["link_raw"].as_u64().unwrap(),
        "{ctx}"
    );
    let (link, is_group) = match d.link() {
        Link::None => (0, false),
        Link::Object(i) => (i, false),
        Link::Group(g) => (g, true),
    };
    assert_eq!(u64::from(link), wd["link"].as_u64().unwrap(), "{ctx}");
    assert_eq!(is_group, wd["link_is_group"].as_bool().unwrap(), "{ctx}");
    for (field, got) in [
        ("offset", d.offset),
        ("size", d.size),
        ("size_with_padding", d.size_with_padding),
        ("created_at", d.created_at),
        ("modified_at", d.modified_at),
        ("uid", d.uid),
        ("gid", d.gid),
    ] {
        assert_eq!(got, wd[field].as_i64().unwrap(), "{ctx} {field}");
    }
    assert_eq!(d.name(), wd["name"].as_str().unwrap(), "{ctx}");
    let data = image.read_object(f, d.id).unwrap();
    assert_eq!(data.len() as i64, d.size, "{ctx}");
    assert_eq!(
        sha256_hex(&data),
        wd["data_sha256"].as_str().unwrap(),
        "{ctx}"
    );
    match d.data_type {
        DataType::Partition => {
            let p = d.partition().unwrap();
            assert_eq!(i64::from(p.fs_type.raw()), wd["fstype"].as_i64().unwrap());
            assert_eq!(p.fs_type.to_string(), wd["fstype_name"].as_str().unwrap());
            assert_eq!(
                i64::from(p.part_type.raw()),
                wd["parttype"].as_i64().unwrap()
            );
            assert_eq!(
                p.part_type.to_string(),
                wd["parttype_name"].as_str().unwrap()
            );
            assert_eq!(p.arch.go_name(), wd["arch"].as_str().unwrap());
        }
        DataType::Signature => {
            let s = d.signature().unwrap();
            assert_eq!(i64::from(s.hash.raw()), wd["hashtype"].as_i64().unwrap());
            assert_eq!(s.hash.to_string(), wd["hashtype_name"].as_str().unwrap());
            let fp = s
                .fingerprint
                .map(|fp| fp.iter().map(|b| format!("{b:02X}")).collect::<String>());
            assert_eq!(fp.as_deref(), wd["entity_fingerprint"].as_str(), "{ctx}");
        }
        DataType::CryptoMessage => {
            let (ft, mt) = d.crypto_message().unwrap();
            assert_eq!(i64::from(ft.raw()), wd["formattype"].as_i64().unwrap());
            assert_eq!(i64::from(mt.raw()), wd["messagetype"].as_i64().unwrap());
        }
        DataType::Sbom => {
            let fmt = d.sbom_format().unwrap();
            assert_eq!(i64::from(fmt.raw()), wd["sbom_format"].as_i64().unwrap());
        }
        DataType::OciBlob | DataType::OciRootIndex => {
            assert_eq!(d.oci_digest().unwrap(), wd["digest"].as_str().unwrap());
        }
        _ => {}
    }
}

#[test]
fn primary_partition_of_every_image() {
    let exp = expected();
    for (name, want) in exp["images"].as_object().unwrap() {
        let mut f = File::open(testdata().join(name)).unwrap();
        let prim = want["descriptors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["parttype"].as_i64() == Some(2));
        match (sif::primary_partition(&mut f), prim) {
            (Ok(p), Some(d)) => {
                assert_eq!(p.offset, d["offset"].as_u64().unwrap(), "{name}");
                assert_eq!(p.size, d["size"].as_u64().unwrap(), "{name}");
                assert_eq!(p.fs_type, sif::FsType::Squash, "{name}");
                assert_eq!(p.arch.go_name(), d["arch"].as_str().unwrap(), "{name}");
            }
            (Err(sif::SifError::NoPrimaryPartition), None) => {}
            (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
        }
    }
}

/// SHA-256, so the read-only crate needs no hashing dependency (the writer has sha2, but
/// these tests also run without the `write` feature).
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}
