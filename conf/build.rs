//! Fixes the install locations at build time: the starter must never take the path of
//! its configuration from anyone but the admin who built and installed it.
fn main() {
    println!("cargo:rerun-if-env-changed=APPTAINER_PREFIX");
    let prefix = std::env::var("APPTAINER_PREFIX").unwrap_or_else(|_| "/usr/local".into());
    assert!(prefix.starts_with('/'), "APPTAINER_PREFIX must be absolute");
    let prefix = prefix.trim_end_matches('/');
    println!("cargo:rustc-env=APPTAINER_PREFIX={prefix}");
    println!("cargo:rustc-env=APPTAINER_SYSCONFDIR={prefix}/etc/apptainer");
    println!("cargo:rustc-env=APPTAINER_CONF_FILE={prefix}/etc/apptainer/apptainer.conf");
    println!("cargo:rustc-env=APPTAINER_LIBEXECDIR={prefix}/libexec/apptainer");
}
