//! Reads every test image of `shared/testdata/sif` and compares header and descriptors with
//! `expected.json`, and the sha256 of every object's data with the recorded one.

use std::fs::File;
use std::path::PathBuf;

use serde_json::Value;
use sif::{DataType, Image, Link};

mod common;
use common::sha256_hex;

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
