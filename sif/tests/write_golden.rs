//! Rebuilds the reference's images with the writer and compares them byte for byte: the 11
//! unsigned test images from `input/`, and the library goldens of create, add, delete and
//! set-primary (`golden/sif-pkg`).
#![cfg(feature = "write")]

use std::fs;
use std::path::{Path, PathBuf};

use sif::write::{
    add_object_with, create_container, delete_object_with, delete_objects, set_metadata,
    set_oci_blob_digest, set_primary_partition_with, CreateOptions, DataSource, DeleteOptions,
    DescriptorInput, ModifyOptions,
};
use sif::{Arch, DataType, FormatType, FsType, MessageType, PartType, SbomFormat, ZERO_TIME};

const T: i64 = 946_702_800;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sif")
}

fn input_file(name: &str) -> DataSource {
    DataSource::File(fs::File::open(testdata().join("input").join(name)).unwrap())
}

fn bytes(b: &[u8]) -> DataSource {
    DataSource::Bytes(b.to_vec())
}

/// Asserts two files are equal, reporting the first differing offset.
fn assert_same(got: &Path, want: &Path) {
    let (g, w) = (fs::read(got).unwrap(), fs::read(want).unwrap());
    if g != w {
        let at = g.iter().zip(&w).position(|(a, b)| a != b);
        panic!(
            "{} differs from {}: lengths {} / {}, first difference at {:?}",
            got.display(),
            want.display(),
            g.len(),
            w.len(),
            at
        );
    }
}

fn golden(rel: &str) -> PathBuf {
    testdata().join("golden/sif-pkg").join(rel)
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("image.sif");
    (dir, p)
}

fn generic(b: &[u8]) -> DescriptorInput {
    DescriptorInput::new(DataType::Generic, bytes(b))
}

fn part(b: &[u8], pt: PartType, arch: Arch) -> DescriptorInput {
    DescriptorInput::new(DataType::Partition, bytes(b)).partition(FsType::Raw, pt, arch)
}

// ---- the unsigned test images ----

fn json_object() -> DescriptorInput {
    DescriptorInput::new(DataType::GenericJson, bytes(b"{}")).name("data.json")
}

fn part_system() -> DescriptorInput {
    part(&[0xfa, 0xce, 0xfe, 0xed], PartType::System, Arch::X386)
}

fn part_prim_sys() -> DescriptorInput {
    DescriptorInput::new(DataType::Partition, input_file("root.squashfs")).partition(
        FsType::Squash,
        PartType::PrimSys,
        Arch::X386,
    )
}

fn part_system_group2() -> DescriptorInput {
    DescriptorInput::new(DataType::Partition, input_file("root.ext3"))
        .partition(FsType::Ext3, PartType::System, Arch::Amd64)
        .group(2)
}

fn test_image(name: &str) -> (CreateOptions, Vec<DescriptorInput>) {
    let det = CreateOptions::deterministic();
    match name {
        "empty.sif" => (det, vec![]),
        "empty-id.sif" => (
            CreateOptions {
                id: Some("3fa802cc-358b-45e3-bcc0-69dc7a45f9f8".parse().unwrap()),
                ..det
            },
            vec![],
        ),
        "empty-launch-script.sif" => (
            CreateOptions {
                launch_script: "#!/usr/bin/env run-script\n".into(),
                ..det
            },
            vec![],
        ),
        "one-object-time.sif" => (
            CreateOptions {
                time: Some(1_593_475_316),
                ..det
            },
            vec![json_object()],
        ),
        "one-object-generic-json.sif" => (det, vec![json_object()]),
        "one-object-crypt-message.sif" => (
            det,
            vec![
                DescriptorInput::new(DataType::CryptoMessage, bytes(&[0xfe, 0xfe, 0xf0, 0xf0]))
                    .crypto_message(FormatType::OpenPgp, MessageType::ClearSignature),
            ],
        ),
        "one-object-sbom.sif" => (
            det,
            vec![
                DescriptorInput::new(DataType::Sbom, input_file("sbom.cdx.json"))
                    .sbom(SbomFormat::CycloneDxJson),
            ],
        ),
        "one-object-oci-root-index.sif" => (
            det,
            vec![DescriptorInput::new(
                DataType::OciRootIndex,
                input_file("index.json"),
            )],
        ),
        "one-object-oci-blob.sif" => (
            det,
            vec![DescriptorInput::new(
                DataType::OciBlob,
                input_file("oci-config.json"),
            )],
        ),
        "one-group.sif" => (det, vec![part_system(), part_prim_sys()]),
        "two-groups.sif" => (
            det,
            vec![part_system(), part_prim_sys(), part_system_group2()],
        ),
        other => panic!("no recipe for {other}"),
    }
}

#[test]
fn rebuilds_the_unsigned_test_images() {
    let names = [
        "empty.sif",
        "empty-id.sif",
        "empty-launch-script.sif",
        "one-object-time.sif",
        "one-object-generic-json.sif",
        "one-object-crypt-message.sif",
        "one-object-sbom.sif",
        "one-object-oci-root-index.sif",
        "one-object-oci-blob.sif",
        "one-group.sif",
        "two-groups.sif",
    ];
    for name in names {
        let (_d, p) = tmp();
        let (opts, inputs) = test_image(name);
        create_container(&p, opts, inputs).unwrap();
        assert_same(&p, &testdata().join(name));
    }
}

// ---- library goldens: create ----

fn create_case(name: &str) -> (CreateOptions, Vec<DescriptorInput>) {
    let det = CreateOptions::deterministic();
    let fe_ed_prim = || {
        DescriptorInput::new(DataType::Partition, bytes(&[0xfe, 0xed])).partition(
            FsType::Squash,
            PartType::PrimSys,
            Arch::X386,
        )
    };
    match name {
        "Empty" | "EmptyCloseOnUnload" => (det, vec![]),
        "EmptyLaunchScript" => (
            CreateOptions {
                launch_script: "#!/usr/bin/env launch-script\n".into(),
                ..det
            },
            vec![],
        ),
        "EmptyWithID" => (
            CreateOptions {
                id: Some("de170c43-36ab-44a8-bca9-1ea1a070a274".parse().unwrap()),
                ..det
            },
            vec![],
        ),
        "EmptyWithTime" => (
            CreateOptions {
                time: Some(T),
                ..det
            },
            vec![],
        ),
        "EmptyDescriptorLimitedCapacity" => (CreateOptions { capacity: 1, ..det }, vec![]),
        "OneDescriptor" => (det, vec![generic(&[0xfa, 0xce])]),
        "TwoDescriptors" => (det, vec![generic(&[0xfa, 0xce]), fe_ed_prim()]),
        "TwoDescriptorsNotAligned" => (
            det,
            vec![
                generic(&[0xfa, 0xce]).alignment(0),
                fe_ed_prim().alignment(0),
            ],
        ),
        "TwoDescriptorsAligned" => (
            det,
            vec![
                generic(&[0xfa, 0xce]).alignment(4),
                fe_ed_prim().alignment(4),
            ],
        ),
        other => panic!("no recipe for {other}"),
    }
}

#[test]
fn create_container_goldens() {
    let cases = [
        "Empty",
        "EmptyCloseOnUnload",
        "EmptyLaunchScript",
        "EmptyWithID",
        "EmptyWithTime",
        "EmptyDescriptorLimitedCapacity",
        "OneDescriptor",
        "TwoDescriptors",
        "TwoDescriptorsNotAligned",
        "TwoDescriptorsAligned",
    ];
    for case in cases {
        let (_d, p) = tmp();
        let (opts, inputs) = create_case(case);
        create_container(&p, opts, inputs).unwrap();
        assert_same(&p, &golden(&format!("TestCreateContainer/{case}.golden")));
        let at_path = golden(&format!("TestCreateContainerAtPath/{case}.golden"));
        if at_path.exists() {
            assert_same(&p, &at_path);
        }
    }
}

// ---- library goldens: add ----

#[test]
fn add_object_goldens() {
    let det = CreateOptions::deterministic;
    let prim = || {
        DescriptorInput::new(DataType::Partition, bytes(&[0xfe, 0xed])).partition(
            FsType::Squash,
            PartType::PrimSys,
            Arch::X386,
        )
    };
    let no_time = ModifyOptions::default();
    type Case = (
        &'static str,
        CreateOptions,
        Vec<DescriptorInput>,
        DescriptorInput,
        ModifyOptions,
    );
    let cases: Vec<Case> = vec![
        ("Empty", det(), vec![], generic(&[0xfa, 0xce]), no_time),
        (
            "EmptyNotAligned",
            det(),
            vec![],
            generic(&[0xfa, 0xce]).alignment(0),
            no_time,
        ),
        (
            "EmptyAligned",
            det(),
            vec![],
            generic(&[0xfa, 0xce]).alignment(128),
            no_time,
        ),
        (
            "NotEmpty",
            det(),
            vec![generic(&[0xfa, 0xce])],
            prim(),
            no_time,
        ),
        (
            "NotEmptyNotAligned",
            det(),
            vec![generic(&[0xfa, 0xce])],
            prim().alignment(0),
            no_time,
        ),
        (
            "NotEmptyAligned",
            det(),
            vec![generic(&[0xfa, 0xce])],
            prim().alignment(128),
            no_time,
        ),
        (
            "WithTime",
            det(),
            vec![],
            generic(&[0xfa, 0xce]),
            ModifyOptions { time: Some(T) },
        ),
        (
            "Deterministic",
            CreateOptions {
                id: Some("de170c43-36ab-44a8-bca9-1ea1a070a274".parse().unwrap()),
                time: Some(T),
                ..det()
            },
            vec![],
            generic(&[0xfa, 0xce]),
            ModifyOptions {
                time: Some(ZERO_TIME),
            },
        ),
    ];
    for (case, opts, inputs, add, mo) in cases {
        let (_d, p) = tmp();
        create_container(&p, opts, inputs).unwrap();
        add_object_with(&p, add, mo).unwrap();
        assert_same(&p, &golden(&format!("TestAddObject/{case}.golden")));
    }
}

#[test]
fn add_second_primary_partition_is_refused_and_leaves_image_unchanged() {
    let (_d, p) = tmp();
    let prim = |b: &[u8]| {
        DescriptorInput::new(DataType::Partition, bytes(b)).partition(
            FsType::Squash,
            PartType::PrimSys,
            Arch::X386,
        )
    };
    create_container(
        &p,
        CreateOptions::deterministic(),
        vec![prim(&[0xfa, 0xce])],
    )
    .unwrap();
    let before = fs::read(&p).unwrap();
    let err = add_object_with(&p, prim(&[0xfe, 0xed]), ModifyOptions::default()).unwrap_err();
    assert!(
        matches!(err, sif::SifError::PrimaryPartitionExists),
        "{err}"
    );
    assert_eq!(fs::read(&p).unwrap(), before);
    assert_same(&p, &golden("TestAddObject/ErrPrimaryPartition.golden"));
}

#[test]
fn add_to_full_image_is_refused() {
    let (_d, p) = tmp();
    let opts = CreateOptions {
        capacity: 0,
        ..CreateOptions::deterministic()
    };
    create_container(&p, opts, vec![]).unwrap();
    let err = add_object_with(&p, generic(&[1]), ModifyOptions::default()).unwrap_err();
    assert!(matches!(err, sif::SifError::InsufficientCapacity), "{err}");
    // A real file of capacity 0 ends after the header (the golden is an in-memory buffer).
    assert_eq!(fs::metadata(&p).unwrap().len(), 128);
}

// ---- library goldens: delete ----

/// Not a deterministic image: the reference's `*/Deterministic` goldens start from it.
fn with_id_and_time() -> CreateOptions {
    CreateOptions {
        id: Some("de170c43-36ab-44a8-bca9-1ea1a070a274".parse().unwrap()),
        time: Some(T),
        ..CreateOptions::deterministic()
    }
}

fn two_generics(p: &Path) {
    let inputs = vec![generic(&[0xfa, 0xce]), generic(&[0xfe, 0xed])];
    create_container(p, CreateOptions::deterministic(), inputs).unwrap();
}

#[test]
fn delete_object_goldens() {
    let opt = |zero, compact| DeleteOptions {
        zero,
        compact,
        time: None,
    };
    let cases = [
        ("OneZero", 1, opt(true, false)),
        ("OneCompact", 1, opt(false, true)),
        ("OneZeroCompact", 1, opt(true, true)),
        ("TwoZero", 2, opt(true, false)),
        ("TwoCompact", 2, opt(false, true)),
        ("TwoZeroCompact", 2, opt(true, true)),
    ];
    for (case, id, o) in cases {
        let (_d, p) = tmp();
        two_generics(&p);
        delete_object_with(&p, id, o).unwrap();
        assert_same(&p, &golden(&format!("TestDeleteObject/{case}.golden")));
    }

    let (_d, p) = tmp();
    two_generics(&p);
    delete_object_with(&p, 1, opt(false, true)).unwrap();
    delete_object_with(&p, 2, opt(false, true)).unwrap();
    assert_same(&p, &golden("TestDeleteObject/Compact.golden"));

    for (case, create, time) in [
        ("WithTime", CreateOptions::deterministic(), Some(T)),
        ("Deterministic", with_id_and_time(), Some(ZERO_TIME)),
    ] {
        let (_d, p) = tmp();
        create_container(&p, create, vec![generic(&[0xfa, 0xce])]).unwrap();
        let o = DeleteOptions {
            time,
            ..Default::default()
        };
        delete_object_with(&p, 1, o).unwrap();
        assert_same(&p, &golden(&format!("TestDeleteObject/{case}.golden")));
    }

    let (_d, p) = tmp();
    let prim = DescriptorInput::new(DataType::Partition, bytes(&[0xfa, 0xce])).partition(
        FsType::Squash,
        PartType::PrimSys,
        Arch::X386,
    );
    create_container(&p, CreateOptions::deterministic(), vec![prim]).unwrap();
    delete_object_with(&p, 1, DeleteOptions::default()).unwrap();
    assert_same(&p, &golden("TestDeleteObject/PrimaryPartition.golden"));

    let (_d, p) = tmp();
    create_container(&p, CreateOptions::deterministic(), vec![]).unwrap();
    let err = delete_object_with(&p, 1, DeleteOptions::default()).unwrap_err();
    assert!(matches!(err, sif::SifError::ObjectNotFound), "{err}");
    assert_same(&p, &golden("TestDeleteObject/ErrObjectNotFound.golden"));
}

#[test]
fn delete_then_add_goldens() {
    for (case, zero, compact) in [
        ("NoCompact", false, false),
        ("Compact", false, true),
        ("Zero", true, false),
        ("ZeroCompact", true, true),
    ] {
        let (_d, p) = tmp();
        let inputs = vec![generic(b"abc"), generic(b"def")];
        create_container(&p, CreateOptions::deterministic(), inputs).unwrap();
        let o = DeleteOptions {
            zero,
            compact,
            time: None,
        };
        delete_object_with(&p, 2, o).unwrap();
        add_object_with(&p, generic(b"ghi"), ModifyOptions::default()).unwrap();
        assert_same(
            &p,
            &golden(&format!("TestDeleteObjectAndAddObject/{case}.golden")),
        );
    }
}

// ---- library goldens: set primary partition ----

#[test]
fn set_primary_partition_goldens() {
    let sys386 = || part(&[0xfa, 0xce], PartType::System, Arch::X386);
    let (_d, p) = tmp();
    create_container(&p, CreateOptions::deterministic(), vec![sys386()]).unwrap();
    set_primary_partition_with(&p, 1, ModifyOptions::default()).unwrap();
    assert_same(&p, &golden("TestSetPrimPart/One.golden"));

    let (_d, p) = tmp();
    create_container(&p, with_id_and_time(), vec![sys386()]).unwrap();
    set_primary_partition_with(
        &p,
        1,
        ModifyOptions {
            time: Some(ZERO_TIME),
        },
    )
    .unwrap();
    assert_same(&p, &golden("TestSetPrimPart/Deterministic.golden"));

    for (case, time) in [("Two", None), ("WithTime", Some(T))] {
        let (_d, p) = tmp();
        let inputs = vec![
            part(&[0xfa, 0xce], PartType::PrimSys, Arch::X386),
            part(&[0xfe, 0xed], PartType::System, Arch::Amd64),
        ];
        create_container(&p, CreateOptions::deterministic(), inputs).unwrap();
        set_primary_partition_with(&p, 2, ModifyOptions { time }).unwrap();
        assert_same(&p, &golden(&format!("TestSetPrimPart/{case}.golden")));
    }

    let (_d, p) = tmp();
    create_container(&p, CreateOptions::deterministic(), vec![]).unwrap();
    let err = set_primary_partition_with(&p, 1, ModifyOptions::default()).unwrap_err();
    assert!(matches!(err, sif::SifError::ObjectNotFound), "{err}");
    assert_same(&p, &golden("TestSetPrimPart/ErrObjectNotFound.golden"));
}

#[test]
fn adding_an_image_to_itself_is_refused() {
    let (_d, p) = tmp();
    create_container(&p, CreateOptions::deterministic(), vec![generic(&[1, 2])]).unwrap();
    let before = fs::read(&p).unwrap();
    let own = DataSource::File(fs::File::open(&p).unwrap());
    let err = add_object_with(
        &p,
        DescriptorInput::new(DataType::Generic, own),
        ModifyOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("image itself"), "{err}");
    assert_eq!(fs::read(&p).unwrap(), before);
}

#[test]
fn delete_objects_goldens() {
    let (_d, p) = tmp();
    two_generics(&p);
    let generic = |d: &sif::Descriptor| d.data_type == DataType::Generic;
    assert_eq!(
        delete_objects(&p, generic, DeleteOptions::default()).unwrap(),
        2
    );
    assert_same(&p, &golden("TestDeleteObjects/DataType.golden"));

    let (_d, p) = tmp();
    two_generics(&p);
    let compact = DeleteOptions {
        compact: true,
        ..Default::default()
    };
    delete_objects(&p, generic, compact).unwrap();
    assert_same(&p, &golden("TestDeleteObjects/DataTypeCompact.golden"));

    let (_d, p) = tmp();
    let prim = DescriptorInput::new(DataType::Partition, bytes(&[0xfa, 0xce])).partition(
        FsType::Squash,
        PartType::PrimSys,
        Arch::X386,
    );
    create_container(&p, CreateOptions::deterministic(), vec![prim]).unwrap();
    delete_objects(&p, sif::Descriptor::is_primary_partition, compact).unwrap();
    assert_same(
        &p,
        &golden("TestDeleteObjects/PrimaryPartitionCompact.golden"),
    );

    let (_d, p) = tmp();
    two_generics(&p);
    let err = delete_objects(&p, |_| false, DeleteOptions::default()).unwrap_err();
    assert!(matches!(err, sif::SifError::ObjectNotFound), "{err}");
    assert_same(&p, &golden("TestDeleteObjects/NilSelectFunc.golden"));
}

const DIGEST: &str = "sha256:93a6ab73f77ce27501f74bb35af9b4da5b964c62f96175a1bc0e8ba2ae0dec08";
const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn blob(b: &[u8]) -> DescriptorInput {
    DescriptorInput::new(DataType::OciBlob, bytes(b))
}

#[test]
fn set_metadata_and_oci_digest_goldens() {
    type Setter = fn(&Path, u32, &str, ModifyOptions) -> Result<(), sif::SifError>;
    let digest: Setter = set_oci_blob_digest;
    let metadata: Setter = |p, id, d, o| set_metadata(p, id, d.as_bytes(), o);
    for (dir, set, value) in [
        ("TestFileImage_SetOCIBlobDigest", digest, DIGEST),
        ("TestSetMetadata", metadata, EMPTY_DIGEST),
    ] {
        let cases = [
            ("One", CreateOptions::deterministic(), 1, 1, None),
            ("Two", CreateOptions::deterministic(), 2, 2, None),
            ("WithTime", CreateOptions::deterministic(), 1, 1, Some(T)),
            ("Deterministic", with_id_and_time(), 1, 1, Some(ZERO_TIME)),
        ];
        for (case, create, objects, id, time) in cases {
            let (_d, p) = tmp();
            let inputs = [blob(&[0xfa, 0xce]), blob(&[0xfe, 0xed])]
                .into_iter()
                .take(objects)
                .collect();
            create_container(&p, create, inputs).unwrap();
            set(&p, id, value, ModifyOptions { time }).unwrap();
            assert_same(&p, &golden(&format!("{dir}/{case}.golden")));
        }
    }
    let (_d, p) = tmp();
    create_container(&p, CreateOptions::deterministic(), vec![]).unwrap();
    let err = set_metadata(&p, 1, b"x", ModifyOptions::default()).unwrap_err();
    assert!(matches!(err, sif::SifError::ObjectNotFound), "{err}");
    assert_same(&p, &golden("TestSetMetadata/ErrObjectNotFound.golden"));
}
