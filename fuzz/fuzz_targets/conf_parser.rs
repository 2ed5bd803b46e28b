//! apptainer.conf and /etc/subuid parsing on arbitrary bytes. Both files are root-owned in
//! setuid mode, but the user-namespace starter and the frontend parse copies anyone may
//! write, and a parser that panics on a corrupt file takes every container start down
//! with it. Beyond "no panic": errors are one bounded line without control characters
//! (the starter prints them as they are), hiding values changes only the message, and the
//! subid lookup only ever returns a range the file declared, of at least 65536 ids.
#![no_main]

use std::path::Path;

use conf::{Conf, SubIdOwner, SubIds, MIN_SUBID_COUNT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_conf(data);
    check_subids(data);
});

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
