//! apptainer.conf, /etc/subuid and /etc/passwd (or /etc/group) parsing on arbitrary bytes. Both files are root-owned in
//! setuid mode, but the user-namespace starter and the frontend parse copies anyone may
//! write, and a parser that panics on a corrupt file takes every container start down
//! with it. Beyond "no panic": errors are one bounded line without control characters
//! (the starter prints them as they are), hiding values changes only the message, and the
//! subid lookup only ever returns a range the file declared, of at least 65536 ids, and an
//! account lookup only an entry the file declared (an unknown name allows nobody).
#![no_main]

use std::path::Path;

use conf::{Accounts, Conf, SubIdOwner, SubIds, MIN_SUBID_COUNT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_conf(data);
    check_subids(data);
    check_accounts(data);
});

fn check_accounts(data: &[u8]) {
    let accounts = Accounts::parse(data);
    for a in accounts.0.iter().take(16) {
        assert!(!a.name.is_empty() && !a.name.contains([':', '\n']), "{a:?}");
        let first = accounts.by_id(a.id).expect("an id the file declares");
        assert_eq!(first.id, a.id);
        let ids = accounts.ids_of(std::slice::from_ref(&a.name));
        assert_eq!(ids.len(), 1);
        assert!(accounts
            .0
            .iter()
            .any(|b| b.name == a.name && b.id == ids[0]));
    }
    let unknown = ["no-such-account-\u{1}".to_string()];
    if !accounts.0.iter().any(|a| a.name == unknown[0]) {
        assert_eq!(
            accounts.ids_of(&unknown),
            [u32::MAX],
            "an unknown name allows nobody"
        );
    }
    assert!(accounts.ids_of(&[]).is_empty());
}

fn check_conf(data: &[u8]) {
    let shown = conf::parse_bytes("fuzz.conf", data, true);
    let hidden = conf::parse_bytes("fuzz.conf", data, false);
    match (&shown, &hidden) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            use_conf(a);
        }
        (Err(a), Err(b)) => {
            check_message(&a.to_string());
            check_message(&b.to_string());
        }
        _ => panic!("echo_values changed the verdict: {shown:?} vs {hidden:?}"),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let same = conf::parse_str("fuzz.conf", text);
        assert_eq!(same.is_ok(), shown.is_ok());
        if let (Ok(a), Ok(b)) = (same, shown) {
            assert_eq!(a, b);
        }
    }
}

/// The derived answers the starter asks of a parsed conf.
fn use_conf(c: &Conf) {
    let _ = c.may_kernel_mount_squashfs_setuid();
    let limited = c.limits_containers();
    if !limited {
        assert!(c.container_path_allowed(Path::new("/tmp/x.sif")));
    }
    assert!(c.cni_configuration_dir().is_absolute() || c.cni_configuration_path.is_some());
    let _ = c.cni_plugin_dir();
}

fn check_message(msg: &str) {
    assert!(
        !msg.chars().any(char::is_control),
        "error message has a control character: {msg:?}"
    );
    assert!(msg.len() <= 2048, "error message of {} bytes", msg.len());
}

fn check_subids(data: &[u8]) {
    let ids = SubIds::parse("fuzz.subuid", data);
    for e in &ids.entries {
        assert!(e.count >= 1);
        assert!(u64::from(e.start) + u64::from(e.count) <= 1 << 32, "{e:?}");
    }
    // Look up the owners the file names, plus ones it may not.
    let mut who: Vec<(Option<String>, u32)> = vec![(None, 0), (Some("user".into()), 1000)];
    for e in ids.entries.iter().take(8) {
        match &e.owner {
            SubIdOwner::Uid(u) => who.push((None, *u)),
            SubIdOwner::Name(n) => who.push((Some(n.clone()), 4242)),
        }
    }
    for (name, uid) in who {
        match ids.lookup(name.as_deref(), uid) {
            Ok(r) => {
                assert!(r.count >= MIN_SUBID_COUNT);
                assert!(
                    ids.entries
                        .iter()
                        .any(|e| !e.disabled && e.start == r.start && e.count == r.count),
                    "lookup returned a range no enabled line declares: {r:?}"
                );
            }
            Err(e) => check_message(&e.to_string()),
        }
    }
}
