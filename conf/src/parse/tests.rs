//! Unit tests of the apptainer.conf parser: defaults, every directive, every kind of bad line,
//! and the shipped etc/apptainer.conf.

use std::path::{Path, PathBuf};

use super::*;

fn parse(text: &str) -> Result<Conf, ConfError> {
    parse_str("apptainer.conf", text)
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(conf) => panic!("{text:?} was accepted: {conf:?}"),
        Err(e) => e.to_string(),
    }
}

/// The defaults as the reference documents them (apptainer-facts.md §2.2), one by one.
#[test]
fn every_directive_has_the_reference_default() {
    let c = Conf::default();
    assert!(c.allow_setuid);
    assert_eq!(c.max_loop_devices, 256);
    assert!(c.allow_ipc_ns && c.allow_pid_ns && c.allow_user_ns && c.allow_uts_ns);
    assert!(c.config_passwd && c.config_group && c.config_resolv_conf);
    assert!(c.mount_proc && c.mount_sys && c.mount_devpts && c.mount_home && c.mount_tmp);
    assert_eq!(c.mount_dev, MountDev::Yes);
    assert!(!c.mount_hostfs);
    assert_eq!(
        c.bind_path,
        [
            BindPathEntry {
                source: "/etc/localtime".into(),
                destination: "/etc/localtime".into()
            },
            BindPathEntry {
                source: "/etc/hosts".into(),
                destination: "/etc/hosts".into()
            },
        ]
    );
    assert!(c.user_bind_control && c.enable_fusemount && c.mount_slave);
    assert_eq!(c.enable_overlay, EnableOverlay::Yes);
    assert_eq!(c.enable_underlay, EnableUnderlay::Yes);
    assert_eq!(c.sessiondir_max_size, 64);
    assert!(c.limit_container_owners.is_empty());
    assert!(c.limit_container_groups.is_empty());
    assert!(c.limit_container_paths.is_empty());
    assert!(c.allow_container_sif && c.allow_container_encrypted && c.allow_container_squashfs);
    assert!(c.allow_container_extfs && c.allow_container_dir);
    assert!(c.allow_setuid_mount_encrypted);
    assert_eq!(
        c.allow_setuid_mount_squashfs,
        SetuidMountSquashfs::IfLimited
    );
    assert!(!c.allow_setuid_mount_extfs && !c.sync_writable_extfs);
    assert!(c.allow_net_users.is_empty() && c.allow_net_groups.is_empty());
    assert!(c.allow_net_networks.is_empty() && c.allow_netns_paths.is_empty());
    assert!(!c.always_use_nv && !c.use_nvidia_container_cli && !c.always_use_rocm);
    assert_eq!(c.root_default_capabilities, RootDefaultCapabilities::Full);
    assert_eq!(c.memory_fs_type, MemoryFsType::Tmpfs);
    assert_eq!(c.cni_configuration_path, None);
    assert_eq!(c.cni_plugin_path, None);
    assert_eq!(
        c.binary_path,
        "$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(c.suidbinary_path, None);
    assert_eq!(c.mksquashfs_procs, 0);
    assert_eq!(c.mksquashfs_mem, None);
    assert!(!c.shared_loop_devices);
    assert_eq!(c.image_driver, None);
    assert_eq!(c.download_concurrency, 3);
    assert_eq!(c.download_part_size, 5_242_880);
    assert_eq!(c.download_buffer_size, 32_768);
    assert!(c.systemd_cgroups);
    assert_eq!(
        c.apptheus_socket_path,
        Path::new("/run/apptheus/gateway.sock")
    );
    assert!(!c.allow_monitoring);
}

#[test]
fn cni_directories_default_below_the_install_prefix() {
    let c = Conf::default();
    assert_eq!(
        c.cni_configuration_dir(),
        Path::new(crate::paths::SYSCONFDIR).join("network")
    );
    assert_eq!(
        c.cni_plugin_dir(),
        Path::new(crate::paths::LIBEXECDIR).join("cni")
    );
    let c =
        parse("cni configuration path = /etc/cni/net.d\ncni plugin path = /opt/cni/bin\n").unwrap();
    assert_eq!(c.cni_configuration_dir(), Path::new("/etc/cni/net.d"));
    assert_eq!(c.cni_plugin_dir(), Path::new("/opt/cni/bin"));
}

#[test]
fn an_empty_file_keeps_scalar_defaults_but_no_list_defaults() {
    let parsed = parse("").unwrap();
    assert_eq!(
        parsed,
        Conf {
            bind_path: Vec::new(),
            ..Conf::default()
        }
    );
    assert_eq!(parse("# only a comment\n\n   \n").unwrap(), parsed);
}

/// One valid non-default value per directive.
const NON_DEFAULT: &[(&str, &str)] = &[
    ("allow setuid", "no"),
    ("max loop devices", "8"),
    ("allow ipc ns", "no"),
    ("allow pid ns", "no"),
    ("allow user ns", "no"),
    ("allow uts ns", "no"),
    ("config passwd", "no"),
    ("config group", "no"),
    ("config resolv_conf", "no"),
    ("mount proc", "no"),
    ("mount sys", "no"),
    ("mount dev", "minimal"),
    ("mount devpts", "no"),
    ("mount home", "no"),
    ("mount tmp", "no"),
    ("mount hostfs", "yes"),
    ("bind path", "/opt"),
    ("user bind control", "no"),
    ("enable fusemount", "no"),
    ("enable overlay", "driver"),
    ("enable underlay", "preferred"),
    ("mount slave", "no"),
    ("sessiondir max size", "128"),
    ("limit container owners", "alice"),
    ("limit container groups", "staff"),
    ("limit container paths", "/apps"),
    ("allow container sif", "no"),
    ("allow container encrypted", "no"),
    ("allow container squashfs", "no"),
    ("allow container extfs", "no"),
    ("allow container dir", "no"),
    ("allow setuid-mount encrypted", "no"),
    ("allow setuid-mount squashfs", "yes"),
    ("allow setuid-mount extfs", "yes"),
    ("sync writable extfs", "yes"),
    ("allow net users", "alice"),
    ("allow net groups", "staff"),
    ("allow net networks", "bridge"),
    ("allow netns paths", "/run/netns/x"),
    ("always use nv", "yes"),
    ("use nvidia-container-cli", "yes"),
    ("always use rocm", "yes"),
    ("root default capabilities", "file"),
    ("memory fs type", "ramfs"),
    ("cni configuration path", "/etc/cni"),
    ("cni plugin path", "/opt/cni"),
    ("binary path", "/usr/bin:/bin"),
    ("suidbinary path", "/usr/bin"),
    ("mksquashfs procs", "2"),
    ("mksquashfs mem", "1G"),
    ("shared loop devices", "yes"),
    ("image driver", "fuseapps"),
    ("download concurrency", "1"),
    ("download part size", "1024"),
    ("download buffer size", "4096"),
    ("systemd cgroups", "no"),
    ("apptheus communication socket path", "/run/a.sock"),
    ("allow monitoring", "yes"),
];

#[test]
fn every_known_directive_is_accepted_and_changes_the_conf() {
    let keys: Vec<&str> = NON_DEFAULT.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys, DIRECTIVES,
        "the test table must cover DIRECTIVES in order"
    );
    let empty = parse("").unwrap();
    for (key, value) in NON_DEFAULT {
        let conf =
            parse(&format!("{key} = {value}\n")).unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
        assert_ne!(conf, empty, "{key} = {value} changed nothing");
    }
}

#[test]
fn every_directive_lands_in_its_own_field() {
    let text: String = NON_DEFAULT
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let c = parse(&text).unwrap();
    let expected = Conf {
        allow_setuid: false,
        max_loop_devices: 8,
        allow_ipc_ns: false,
        allow_pid_ns: false,
        allow_user_ns: false,
        allow_uts_ns: false,
        config_passwd: false,
        config_group: false,
        config_resolv_conf: false,
        mount_proc: false,
        mount_sys: false,
        mount_dev: MountDev::Minimal,
        mount_devpts: false,
        mount_home: false,
        mount_tmp: false,
        mount_hostfs: true,
        bind_path: vec![BindPathEntry::same("/opt")],
        user_bind_control: false,
        enable_fusemount: false,
        enable_overlay: EnableOverlay::Driver,
        enable_underlay: EnableUnderlay::Preferred,
        mount_slave: false,
        sessiondir_max_size: 128,
        limit_container_owners: vec!["alice".into()],
        limit_container_groups: vec!["staff".into()],
        limit_container_paths: vec![PathBuf::from("/apps")],
        allow_container_sif: false,
        allow_container_encrypted: false,
        allow_container_squashfs: false,
        allow_container_extfs: false,
        allow_container_dir: false,
        allow_setuid_mount_encrypted: false,
        allow_setuid_mount_squashfs: SetuidMountSquashfs::Yes,
        allow_setuid_mount_extfs: true,
        sync_writable_extfs: true,
        allow_net_users: vec!["alice".into()],
        allow_net_groups: vec!["staff".into()],
        allow_net_networks: vec!["bridge".into()],
        allow_netns_paths: vec![PathBuf::from("/run/netns/x")],
        always_use_nv: true,
        use_nvidia_container_cli: true,
        always_use_rocm: true,
        root_default_capabilities: RootDefaultCapabilities::File,
        memory_fs_type: MemoryFsType::Ramfs,
        cni_configuration_path: Some("/etc/cni".into()),
        cni_plugin_path: Some("/opt/cni".into()),
        binary_path: "/usr/bin:/bin".into(),
        suidbinary_path: Some("/usr/bin".into()),
        mksquashfs_procs: 2,
        mksquashfs_mem: Some("1G".into()),
        shared_loop_devices: true,
        image_driver: Some("fuseapps".into()),
        download_concurrency: 1,
        download_part_size: 1024,
        download_buffer_size: 4096,
        systemd_cgroups: false,
        apptheus_socket_path: "/run/a.sock".into(),
        allow_monitoring: true,
    };
    assert_eq!(c, expected);
}

#[test]
fn every_enum_value_parses() {
    type Field = fn(&Conf) -> String;
    let cases: &[(&str, Field)] = &[
        ("mount dev = yes", |c| format!("{:?}", c.mount_dev)),
        ("mount dev = no", |c| format!("{:?}", c.mount_dev)),
        ("mount dev = minimal", |c| format!("{:?}", c.mount_dev)),
        ("enable overlay = yes", |c| {
            format!("{:?}", c.enable_overlay)
        }),
        ("enable overlay = no", |c| format!("{:?}", c.enable_overlay)),
        ("enable overlay = try", |c| {
            format!("{:?}", c.enable_overlay)
        }),
        ("enable overlay = driver", |c| {
            format!("{:?}", c.enable_overlay)
        }),
        ("enable underlay = yes", |c| {
            format!("{:?}", c.enable_underlay)
        }),
        ("enable underlay = no", |c| {
            format!("{:?}", c.enable_underlay)
        }),
        ("enable underlay = preferred", |c| {
            format!("{:?}", c.enable_underlay)
        }),
        ("allow setuid-mount squashfs = yes", |c| {
            format!("{:?}", c.allow_setuid_mount_squashfs)
        }),
        ("allow setuid-mount squashfs = no", |c| {
            format!("{:?}", c.allow_setuid_mount_squashfs)
        }),
        ("allow setuid-mount squashfs = iflimited", |c| {
            format!("{:?}", c.allow_setuid_mount_squashfs)
        }),
        ("root default capabilities = full", |c| {
            format!("{:?}", c.root_default_capabilities)
        }),
        ("root default capabilities = file", |c| {
            format!("{:?}", c.root_default_capabilities)
        }),
        ("root default capabilities = no", |c| {
            format!("{:?}", c.root_default_capabilities)
        }),
        ("memory fs type = tmpfs", |c| {
            format!("{:?}", c.memory_fs_type)
        }),
        ("memory fs type = ramfs", |c| {
            format!("{:?}", c.memory_fs_type)
        }),
    ];
    for (line, field) in cases {
        let conf = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let word = line.rsplit(' ').next().unwrap();
        assert_eq!(field(&conf).to_lowercase(), word, "{line}");
    }
}

#[test]
fn try_overlay_means_the_same_as_yes() {
    assert!(
        EnableOverlay::Try.allows_kernel_overlay() && EnableOverlay::Yes.allows_kernel_overlay()
    );
    assert!(
        !EnableOverlay::Driver.allows_kernel_overlay() && EnableOverlay::Driver.allows_overlay()
    );
    assert!(!EnableOverlay::No.allows_overlay());
}

#[test]
fn a_bad_boolean_is_refused_with_file_line_key_and_value() {
    let text = "# comment\n\nallow setuid = maybe\n";
    assert_eq!(
        err(text),
        r#"apptainer.conf:3: "allow setuid" must be yes or no, not "maybe""#
    );
    for bad in [
        "Yes",
        "YES",
        "true",
        "1",
        "on",
        "yes no",
        "yes,no",
        "yes # comment",
    ] {
        assert!(
            err(&format!("mount proc = {bad}")).contains("must be yes or no"),
            "{bad}"
        );
    }
}

#[test]
fn a_bad_number_is_refused() {
    for bad in [
        "-1",
        "+5",
        "0x10",
        "010",
        "1.5",
        "12MB",
        "1 000",
        "18446744073709551616",
        "ten",
    ] {
        let msg = err(&format!("max loop devices = {bad}"));
        assert!(
            msg.starts_with("apptainer.conf:1: \"max loop devices\" must be an unsigned decimal"),
            "{bad}: {msg}"
        );
    }
    assert_eq!(parse("max loop devices = 0").unwrap().max_loop_devices, 0);
    assert_eq!(
        parse("download part size = 18446744073709551615")
            .unwrap()
            .download_part_size,
        u64::MAX
    );
}

#[test]
fn a_bad_enum_value_is_refused_naming_the_choices() {
    assert_eq!(
        err("mount dev = some"),
        r#"apptainer.conf:1: "mount dev" must be yes, no or minimal, not "some""#
    );
    assert!(err("enable overlay = maybe").contains("must be yes, no, try or driver"));
    assert!(err("enable underlay = try").contains("must be yes, no or preferred"));
    assert!(err("allow setuid-mount squashfs = limited").contains("must be yes, no or iflimited"));
    assert!(err("root default capabilities = yes").contains("must be full, file or no"));
    assert!(err("memory fs type = ext4").contains("must be tmpfs or ramfs"));
}

#[test]
fn an_unknown_key_is_refused() {
    assert_eq!(
        err("\nallow setiud = yes\n"),
        r#"apptainer.conf:2: unknown directive "allow setiud""#
    );
    // Keys are matched exactly, as the reference does.
    assert!(err("Allow Setuid = yes").contains("unknown directive"));
    assert!(err("allow  setuid = yes").contains("unknown directive"));
    // Directives of older releases are not silently accepted either.
    assert!(err("mksquashfs path = /usr/bin/mksquashfs").contains("unknown directive"));
}

#[test]
fn a_repeated_single_valued_key_is_refused() {
    assert_eq!(
        err("allow setuid = yes\nmount proc = yes\nallow setuid = yes\n"),
        r#"apptainer.conf:3: "allow setuid" is already set on line 1"#
    );
    assert!(err("image driver = a\nimage driver = b").contains("already set on line 1"));
}

#[test]
fn both_spellings_of_the_apptheus_socket_are_one_directive() {
    let c = parse("apptheus socket path = /run/x.sock").unwrap();
    assert_eq!(c.apptheus_socket_path, Path::new("/run/x.sock"));
    let msg = err("apptheus socket path = /a\napptheus communication socket path = /b");
    assert!(
        msg.contains("\"apptheus communication socket path\" is already set on line 1"),
        "{msg}"
    );
}

#[test]
fn a_line_without_equals_is_refused() {
    assert_eq!(
        err("allow setuid yes"),
        r#"apptainer.conf:1: expected "key = value", a comment or a blank line"#
    );
    assert!(err("= yes").contains("unknown directive \"\""));
}

#[test]
fn invalid_utf8_is_refused_with_its_line() {
    let e = parse_bytes(
        "apptainer.conf",
        b"mount proc = yes\nbind path = /\xff\n",
        true,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "apptainer.conf:2: line is not valid UTF-8");
}

#[test]
fn an_empty_value_leaves_the_directive_unset() {
    let c = parse("image driver =\nmount proc =   \nimage driver = x\n").unwrap();
    assert_eq!(c.image_driver.as_deref(), Some("x"));
    assert!(c.mount_proc);
}

#[test]
fn blanks_around_keys_values_and_crlf_endings_are_ignored() {
    let c = parse("  \tmount proc\t=\tno  \r\n# c\r\n   # indented comment\nmount sys=no").unwrap();
    assert!(!c.mount_proc && !c.mount_sys);
}

#[test]
fn list_directives_accumulate_in_order_across_lines_and_commas() {
    let c = parse(
        "bind path = /a, /b:/c\nbind path = /d:/e ,,\nlimit container owners = alice, bob\n\
         limit container owners = carol\nlimit container paths = /x/, /y\nallow netns paths = /run/netns/n\n\
         allow net users = u1,u2\nallow net groups = g\nallow net networks = bridge, ptp\nlimit container groups = g1",
    )
    .unwrap();
    let bind = |s: &str, d: &str| BindPathEntry {
        source: s.into(),
        destination: d.into(),
    };
    assert_eq!(
        c.bind_path,
        [bind("/a", "/a"), bind("/b", "/c"), bind("/d", "/e")]
    );
    assert_eq!(c.limit_container_owners, ["alice", "bob", "carol"]);
    assert_eq!(c.limit_container_groups, ["g1"]);
    assert_eq!(
        c.limit_container_paths,
        [PathBuf::from("/x"), PathBuf::from("/y")]
    );
    assert_eq!(c.allow_netns_paths, [PathBuf::from("/run/netns/n")]);
    assert_eq!(c.allow_net_users, ["u1", "u2"]);
    assert_eq!(c.allow_net_groups, ["g"]);
    assert_eq!(c.allow_net_networks, ["bridge", "ptp"]);
}

#[test]
fn list_and_path_values_must_be_well_formed() {
    assert!(err("bind path = relative").contains("absolute source[:destination]"));
    assert!(err("bind path = /a:rel").contains("absolute source[:destination]"));
    assert!(err("bind path = /a:/b:ro").contains("absolute source[:destination]"));
    assert!(err("limit container paths = /data/../etc").contains("without \".\" or \"..\""));
    assert!(err("limit container paths = /data/./x").contains("without \".\" or \"..\""));
    assert!(err("limit container paths = data").contains("an absolute path"));
    assert!(err("allow netns paths = netns").contains("an absolute path"));
    assert!(err("cni plugin path = bin").contains("an absolute path"));
    assert!(err("limit container owners = al ice").contains("list of names"));
    assert!(err("binary path = /bin,/usr/bin").contains("a single value without commas"));
}

#[test]
fn values_are_not_echoed_when_asked_not_to() {
    let text = b"secret-key = hunter2\n";
    let e = parse_bytes("apptainer.conf", text, false)
        .unwrap_err()
        .to_string();
    assert!(
        !e.contains("secret") && e.contains("unknown directive"),
        "{e}"
    );
    let e = parse_bytes("apptainer.conf", b"allow setuid = hunter2", false)
        .unwrap_err()
        .to_string();
    assert!(
        !e.contains("hunter2") && e.contains("\"allow setuid\" must be yes or no"),
        "{e}"
    );
}

#[test]
fn a_long_bad_value_is_shortened_in_the_error() {
    let long = "x".repeat(10_000);
    let msg = err(&format!("allow setuid = {long}"));
    assert!(msg.len() < 200, "{} bytes", msg.len());
}

#[test]
fn kernel_squashfs_in_setuid_mode_follows_the_limits_when_iflimited() {
    let c = |t: &str| parse(t).unwrap().may_kernel_mount_squashfs_setuid();
    assert!(!Conf::default().may_kernel_mount_squashfs_setuid());
    assert!(!c(""));
    assert!(c("limit container owners = alice"));
    assert!(c("limit container groups = staff"));
    assert!(c("limit container paths = /apps"));
    assert!(c("allow setuid-mount squashfs = yes"));
    assert!(!c(
        "allow setuid-mount squashfs = no\nlimit container paths = /apps"
    ));
}

#[test]
fn container_paths_are_compared_by_whole_components() {
    let c = parse("limit container paths = /data, /apps/images/").unwrap();
    assert!(c.container_path_allowed(Path::new("/data/x.sif")));
    assert!(c.container_path_allowed(Path::new("/apps/images/sub/y.sif")));
    assert!(!c.container_path_allowed(Path::new("/database/x.sif")));
    assert!(!c.container_path_allowed(Path::new("/apps/imagesx/y.sif")));
    assert!(Conf::default().container_path_allowed(Path::new("/anywhere.sif")));
}

fn shipped_file() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/apptainer.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_shipped_file_parses_to_the_defaults_except_shared_loop_devices() {
    let parsed = parse(&shipped_file()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed,
        Conf {
            shared_loop_devices: true,
            ..Conf::default()
        }
    );
}

#[test]
fn the_shipped_file_documents_every_directive() {
    let text = shipped_file();
    for key in DIRECTIVES {
        let active = text
            .lines()
            .any(|l| l.split('=').next().map(str::trim) == Some(*key));
        let example = text.lines().any(|l| l.starts_with(&format!("#{key} =")));
        assert!(
            active || example,
            "etc/apptainer.conf does not mention {key:?}"
        );
    }
}

/// Deterministic pseudo-random input built from pieces of real lines: nothing may panic, and
/// every error must point at a line that exists.
#[test]
fn arbitrary_input_never_panics() {
    const PIECES: &[&str] = &[
        "allow setuid",
        "bind path",
        "=",
        " = ",
        ",",
        ":",
        "/",
        "..",
        "yes",
        "no",
        "#",
        "\n",
        "\r",
        "\t",
        "99999999999999999999",
        "0",
        "\u{0}",
        "\u{202e}",
        "limit container paths",
        "max loop devices",
        "é",
        "mount dev",
        "minimal",
        "apptheus socket path",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(state % 40) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(PIECES[(state % PIECES.len() as u64) as usize]);
        }
        let lines = text.split('\n').count();
        match parse(&text) {
            Ok(_) => {}
            Err(ConfError::Syntax { line, .. })
            | Err(ConfError::UnknownKey { line, .. })
            | Err(ConfError::DuplicateKey { line, .. })
            | Err(ConfError::BadValue { line, .. }) => assert!(line >= 1 && line <= lines),
            Err(e) => panic!("unexpected error kind for {text:?}: {e}"),
        }
    }
}
