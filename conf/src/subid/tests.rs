//! Tests of /etc/subuid and /etc/subgid parsing and lookup.

use super::*;

fn ids(text: &str) -> SubIds {
    SubIds::parse("/etc/subuid", text.as_bytes())
}

const R: fn(u32, u32) -> SubIdRange = |start, count| SubIdRange { start, count };

#[test]
fn lines_are_name_or_uid_start_count() {
    let s = ids("alice:100000:65536\n1001:165536:65536\n!bob:231072:65536\n");
    assert_eq!(
        s.entries,
        [
            SubIdEntry {
                owner: SubIdOwner::Name("alice".into()),
                start: 100_000,
                count: 65_536,
                disabled: false
            },
            SubIdEntry {
                owner: SubIdOwner::Uid(1001),
                start: 165_536,
                count: 65_536,
                disabled: false
            },
            SubIdEntry {
                owner: SubIdOwner::Name("bob".into()),
                start: 231_072,
                count: 65_536,
                disabled: true
            },
        ]
    );
}

#[test]
fn a_user_is_found_by_name_or_by_uid() {
    let s = ids("alice:100000:65536\n1001:165536:65536\n");
    assert_eq!(s.lookup(Some("alice"), 1000), Ok(R(100_000, 65_536)));
    assert_eq!(s.lookup(None, 1001), Ok(R(165_536, 65_536)));
    assert_eq!(s.lookup(Some("carol"), 1001), Ok(R(165_536, 65_536)));
    // Without the name, a name-only line cannot be attributed.
    assert!(matches!(
        s.lookup(None, 1000),
        Err(SubIdError::NoEntry { .. })
    ));
}

#[test]
fn a_disabled_line_refuses_the_user() {
    let s = ids("!alice:100000:65536\n");
    let e = s.lookup(Some("alice"), 1000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/subuid: the mapping entry for \"alice\" (uid 1000) has been disabled by the administrator"
    );
}

#[test]
fn ranges_smaller_than_65536_are_not_usable() {
    let s = ids("alice:100000:65535\nalice:200000:1000\n");
    let e = s.lookup(Some("alice"), 1000).unwrap_err();
    assert!(matches!(e, SubIdError::TooSmall { .. }));
    assert!(e.to_string().contains("fewer than 65536 ids"), "{e}");
}

#[test]
fn an_exact_65536_range_wins_over_larger_ones_and_else_the_largest() {
    let s = ids("alice:100000:131072\nalice:300000:65536\n");
    assert_eq!(s.lookup(Some("alice"), 1000), Ok(R(300_000, 65_536)));
    let s = ids("alice:100000:70000\nalice:300000:200000\nalice:600000:200000\nalice:900000:10\n");
    assert_eq!(s.lookup(Some("alice"), 1000), Ok(R(300_000, 200_000)));
}

#[test]
fn a_missing_user_is_its_own_error() {
    let e = ids("bob:100000:65536\n")
        .lookup(Some("alice"), 1000)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/subuid: no mapping entry for \"alice\" (uid 1000)"
    );
}

#[test]
fn malformed_lines_are_skipped_not_fatal() {
    let text = "\n# comment\nalice\nalice:1\nalice:x:65536\nalice:1:0\nalice:-1:65536\n\
                alice: 1:65536\n:100000:65536\n!:100000:65536\nalice:4294901760:65537\n\
                alice:4294967295:1\nalice:100000:65536:extra\r\n";
    let s = ids(text);
    assert_eq!(s.entries.len(), 2, "{:?}", s.entries);
    assert_eq!(s.entries[0].start, 4_294_967_295);
    assert_eq!(s.lookup(Some("alice"), 1000), Ok(R(100_000, 65_536)));
}

#[test]
fn a_range_may_end_exactly_at_the_top_of_the_id_space() {
    let s = ids("alice:4294901760:65536\n");
    assert_eq!(s.lookup(Some("alice"), 1000), Ok(R(4_294_901_760, 65_536)));
}

#[test]
fn a_numeric_first_field_is_a_uid_not_a_name() {
    let s = ids("1000:100000:65536\n");
    assert_eq!(s.entries[0].owner, SubIdOwner::Uid(1000));
    assert!(s.lookup(Some("1000"), 2000).is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut state: u32 = 0x1234_5678;
    let alphabet = b"0123456789:!\n\ra\xff-";
    for _ in 0..2000 {
        let mut text = Vec::new();
        for _ in 0..(state % 64) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            text.push(alphabet[(state as usize) % alphabet.len()]);
        }
        let s = SubIds::parse("f", &text);
        assert!(s
            .entries
            .iter()
            .all(|e| e.count > 0 && u64::from(e.start) + u64::from(e.count) <= 1 << 32));
        let _ = s.lookup(Some("a"), 0);
    }
}

#[test]
fn files_load_from_disk_plain_and_trusted() {
    let path = std::env::temp_dir().join(format!("conf-subid-test-{}", std::process::id()));
    std::fs::write(&path, "alice:100000:65536\n").unwrap();
    let s = load_subids(&path).unwrap();
    assert_eq!(s.file, path.display().to_string());
    assert_eq!(s.lookup(Some("alice"), 1), Ok(R(100_000, 65_536)));
    std::fs::remove_file(&path).unwrap();
    // /etc/subuid itself, when present, is root-owned in a root-owned /etc.
    if std::path::Path::new(SUBUID_FILE).exists() {
        let trusted = load_subids_trusted(SUBUID_FILE);
        assert!(trusted.is_ok(), "{trusted:?}");
    }
}
