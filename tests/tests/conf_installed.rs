//! End-to-end checks of the installed admin files: the apptainer.conf that `make install`
//! put under the test prefix is trusted by the loader the setuid starter uses, and equals the
//! shipped etc/apptainer.conf; the test users' /etc/subuid and /etc/subgid ranges resolve as
//! the starter will resolve them for `--fakeroot`.

use std::path::Path;

use apptainer_tests::{account, conf_path, require, TEST_USER, TEST_USER2};
use conf::{Conf, SubIdError, MIN_SUBID_COUNT, SUBGID_FILE, SUBUID_FILE};

fn shipped_conf() -> Conf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/apptainer.conf");
    let text = std::fs::read_to_string(&path).expect("etc/apptainer.conf in the source tree");
    conf::parse_str(&path.display().to_string(), &text).expect("shipped file parses")
}

#[test]
fn the_installed_conf_is_at_the_build_time_path_and_trusted() {
    require!(
        conf_path().exists(),
        "apptainer installed under the test prefix (make install)"
    );
    assert_eq!(
        Path::new(conf::paths::CONF_FILE),
        conf_path(),
        "the conf crate was built with a different APPTAINER_PREFIX than the test prefix"
    );
    let trusted = conf::load_trusted(conf::paths::CONF_FILE)
        .unwrap_or_else(|e| panic!("installed apptainer.conf is not trusted: {e}"));
    assert_eq!(*trusted, shipped_conf());
}

#[test]
fn the_installed_conf_enables_shared_loop_devices_and_keeps_other_defaults() {
    require!(
        conf_path().exists(),
        "apptainer installed under the test prefix (make install)"
    );
    let conf = conf::load(conf_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        conf,
        Conf {
            shared_loop_devices: true,
            ..Conf::default()
        }
    );
    // With no container limits, iflimited keeps kernel squashfs mounts off in setuid mode.
    assert!(!conf.may_kernel_mount_squashfs_setuid());
}

#[test]
fn the_test_user_has_a_usable_subordinate_range_and_the_second_user_has_none() {
    let user = account(TEST_USER);
    let user2 = account(TEST_USER2);
    require!(
        user.is_some() && user2.is_some() && Path::new(SUBUID_FILE).exists(),
        "test users and /etc/subuid from scripts/test-setup.sh"
    );
    let (user, user2) = (user.unwrap(), user2.unwrap());
    for file in [SUBUID_FILE, SUBGID_FILE] {
        let ids = conf::load_subids_trusted(file).unwrap_or_else(|e| panic!("{e}"));
        let range = ids
            .lookup(Some(&user.name), user.uid)
            .unwrap_or_else(|e| panic!("{TEST_USER}: {e}"));
        assert!(range.count >= MIN_SUBID_COUNT, "{file}: {range:?}");
        assert!(
            u64::from(range.start) > u64::from(user.uid.max(user.gid)),
            "{file}: range {range:?} overlaps ordinary ids"
        );
        let missing = ids.lookup(Some(&user2.name), user2.uid);
        assert!(
            matches!(missing, Err(SubIdError::NoEntry { .. })),
            "{file}: {missing:?}"
        );
    }
}
