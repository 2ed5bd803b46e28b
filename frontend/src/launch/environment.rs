//! The container's environment, host side (apptainer-facts.md §5.1). The result has two parts:
//! the process environment the starter hands to the container's `/bin/sh`, and the
//! `APPTAINERENV_*` overrides, which the action script applies after the image's env scripts
//! (so they beat the image, while the image beats the host; see `action.sh`).

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

/// PATH inside the container before the image's env scripts run, as the reference sets it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables `--cleanenv` still forwards (upper and lower case).
const CLEANENV_KEEP: [&str; 6] = [
    "TERM",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Names bash keeps read-only: the action script must not try to unset them.
const SHELL_READONLY: [&str; 6] = ["UID", "EUID", "PPID", "GID", "BASHOPTS", "SHELLOPTS"];

/// What the user asked for about the environment.
#[derive(Clone, Debug, Default)]
pub struct EnvRequest {
    pub cleanenv: bool,
    pub no_eval: bool,
    /// `--env` pairs, in order.
    pub env: Vec<(String, String)>,
    /// `--env-file` pairs, already evaluated, in order.
    pub env_file: Vec<(String, String)>,
    /// `--no-env` names.
    pub no_env: Vec<String>,
}

/// Facts about this launch that become `APPTAINER_*` variables in the container.
#[derive(Clone, Debug, Default)]
pub struct RuntimeVars {
    /// Absolute image path (`APPTAINER_CONTAINER`).
    pub container: String,
    /// Image basename (`APPTAINER_NAME`).
    pub name: String,
    /// exec, run, shell or test (`APPTAINER_COMMAND`).
    pub command: String,
    pub app: Option<String>,
    pub shell: Option<String>,
    /// HOME inside the container.
    pub home: String,
}

/// The computed environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// The process environment of the container's first process, in a stable order.
    pub process: Vec<(String, String)>,
    /// Overrides (`APPTAINERENV_FOO`, `--env`, `--env-file`), applied after the image's
    /// env scripts; evaluated by the container's shell unless `no_eval`.
    pub overrides: Vec<(String, String)>,
    pub no_eval: bool,
}

impl ContainerEnv {
    /// Names from `process` that the action script snapshots before the image's env scripts
    /// run and restores afterwards where the image did not define them.
    pub fn snapshot_names(&self) -> Vec<&str> {
        self.process
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !SHELL_READONLY.contains(k))
            .collect()
    }

    /// The override assignments as shell text the action script evaluates: double-quoted
    /// (so the container's shell expands `$VAR` and `$(...)`, the reference's default) or,
    /// with `--no-eval`, single-quoted and literal.
    pub fn overrides_script(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.overrides {
            let quoted = if self.no_eval {
                single_quote(v)
            } else {
                double_quote(v)
            };
            out.push_str(&format!("export {k}={quoted}\n"));
        }
        out
    }

    /// The environment a directly executed command gets when the image has no shell: the
    /// process environment with the overrides applied literally.
    pub fn flattened(&self) -> Vec<(String, String)> {
        let mut map: BTreeMap<String, String> = self.process.iter().cloned().collect();
        for (k, v) in &self.overrides {
            if let Some(path) = user_path_target(k) {
                apply_user_path(&mut map, path, v);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
        map.into_iter().collect()
    }
}

fn user_path_target(key: &str) -> Option<&'static str> {
    match key {
        "SING_USER_DEFINED_PATH" => Some("set"),
        "SING_USER_DEFINED_PREPEND_PATH" => Some("prepend"),
        "SING_USER_DEFINED_APPEND_PATH" => Some("append"),
        _ => None,
    }
}

fn apply_user_path(map: &mut BTreeMap<String, String>, how: &str, value: &str) {
    let path = map
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let new = match how {
        "set" => value.to_string(),
        "prepend" => format!("{value}:{path}"),
        _ => format!("{path}:{value}"),
    };
    map.insert("PATH".into(), new);
}

/// A valid shell variable name: only those can be exported by the action script.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn single_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// Double quotes for one level of shell evaluation: an unescaped `"` is escaped so it cannot
/// end the string early, a trailing lone backslash so it cannot escape the closing quote.
/// `$`, backquotes and other backslashes stay active: evaluating them is the point.
fn double_quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    let mut backslashes = 0usize;
    for c in v.chars() {
        if c == '"' && backslashes.is_multiple_of(2) {
            s.push('\\');
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        s.push(c);
    }
    if !backslashes.is_multiple_of(2) {
        s.push('\\');
    }
    s.push('"');
    s
}

/// Computes the container environment from the host's.
pub fn compute(
    host: &[(OsString, OsString)],
    req: &EnvRequest,
    rt: &RuntimeVars,
) -> Result<ContainerEnv> {
    let host: Vec<(String, String)> = host
        .iter()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
        .collect();
    let mut process = forwarded_host_vars(&host, req);
    process.push(("HOME".into(), rt.home.clone()));
    process.push(("PATH".into(), DEFAULT_PATH.into()));
    process.extend(runtime_vars(rt, req.no_eval));
    let overrides = collect_overrides(&host, req)?;
    Ok(ContainerEnv {
        process,
        overrides,
        no_eval: req.no_eval,
    })
}

fn forwarded_host_vars(host: &[(String, String)], req: &EnvRequest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in host {
        if !is_env_name(k) || !is_forwardable(k, req) {
            continue;
        }
        out.push((k.clone(), v.clone()));
    }
    if req.cleanenv {
        out.push(("LANG".into(), "C".into()));
    }
    out
}

fn is_forwardable(key: &str, req: &EnvRequest) -> bool {
    const PREFIXES: [&str; 4] = [
        "APPTAINER_",
        "SINGULARITY_",
        "APPTAINERENV_",
        "SINGULARITYENV_",
    ];
    if PREFIXES.iter().any(|p| key.starts_with(p)) {
        return false;
    }
    if matches!(key, "HOME" | "PATH" | "LD_LIBRARY_PATH") || req.no_env.iter().any(|n| n == key) {
        return false;
    }
    !req.cleanenv || CLEANENV_KEEP.iter().any(|n| key.eq_ignore_ascii_case(n))
}

fn runtime_vars(rt: &RuntimeVars, no_eval: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut both = |name: &str, value: &str| {
        out.push((format!("APPTAINER_{name}"), value.to_string()));
        out.push((format!("SINGULARITY_{name}"), value.to_string()));
    };
    both("CONTAINER", &rt.container);
    both("NAME", &rt.name);
    if let Some(app) = &rt.app {
        both("APPNAME", app);
    }
    if let Some(shell) = &rt.shell {
        both("SHELL", shell);
    }
    if no_eval {
        // The OCI runscript template reads SINGULARITY_NO_EVAL to skip its own eval.
        both("NO_EVAL", "1");
    }
    out.push(("APPTAINER_COMMAND".into(), rt.command.clone()));
    out
}

/// `APPTAINERENV_*` (legacy `SINGULARITYENV_*` were copied to it at start-up), then
/// `--env-file`, then `--env`: later sources win over earlier ones.
fn collect_overrides(host: &[(String, String)], req: &EnvRequest) -> Result<Vec<(String, String)>> {
    let mut map: Vec<(String, String)> = Vec::new();
    let set = |k: &str, v: &str, map: &mut Vec<(String, String)>| {
        map.retain(|(key, _)| key != k);
        map.push((k.to_string(), v.to_string()));
    };
    let mut env_names: Vec<&str> = host
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("APPTAINERENV_"))
        .collect();
    env_names.sort_unstable();
    for name in env_names {
        let key = format!("APPTAINERENV_{name}");
        if let Some((_, v)) = host.iter().find(|(k, _)| *k == key) {
            set(name, v, &mut map);
        }
    }
    for (k, v) in &req.env_file {
        set(k, v, &mut map);
    }
    for (k, v) in &req.env {
        if req.env_file.iter().any(|(fk, _)| fk == k) {
            crate::warning!("{k} is set by both --env-file and --env: using the --env value");
        }
        set(k, v, &mut map);
    }
    let mut out = Vec::new();
    for (k, v) in map {
        if let Some(pair) = checked_override(k, v)? {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Applies the reference's rules to one override: the PATH family becomes the
/// `SING_USER_DEFINED_*` variables, a few names may not be overridden at all.
fn checked_override(key: String, value: String) -> Result<Option<(String, String)>> {
    if !is_env_name(&key) {
        bail!("environment variable name {key:?} is not a valid shell variable name");
    }
    let key = match key.as_str() {
        "PATH" => "SING_USER_DEFINED_PATH".to_string(),
        "PREPEND_PATH" => "SING_USER_DEFINED_PREPEND_PATH".to_string(),
        "APPEND_PATH" => "SING_USER_DEFINED_APPEND_PATH".to_string(),
        "HOME"
        | "APPTAINER_SHELL"
        | "APPTAINER_APPNAME"
        | "SINGULARITY_SHELL"
        | "SINGULARITY_APPNAME" => {
            crate::warning!(
                "overriding {key} environment variable with APPTAINERENV_{key} is not permitted"
            );
            return Ok(None);
        }
        // UID and GID are the shell's own; the reference skips them silently.
        "UID" | "GID" => return Ok(None),
        _ => key,
    };
    let value = if key == "LD_LIBRARY_PATH" && !value.is_empty() {
        format!("{value}:/.singularity.d/libs")
    } else {
        value
    };
    Ok(Some((key, value)))
}

/// Evaluates `--env-file` files with the host's `/bin/sh`, as the caller, and returns the
/// variables each file assigns (later files override earlier ones). The reference evaluates
/// them in its embedded shell with the host environment plus `APPTAINER_IMAGE`.
pub fn read_env_files(files: &[impl AsRef<Path>], image: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for file in files {
        let file = file.as_ref();
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("while reading env file {:?}", file.display()))?;
        let names = assigned_names(&text);
        for (k, v) in evaluate_env_file(file, image, &names)? {
            out.retain(|(key, _)| *key != k);
            out.push((k, v));
        }
    }
    Ok(out)
}

/// The names a file assigns at the start of a line (`NAME=` or `export NAME=`).
fn assigned_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        if let Some((name, _)) = line.split_once('=') {
            if is_env_name(name) && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

fn evaluate_env_file(file: &Path, image: &str, names: &[String]) -> Result<Vec<(String, String)>> {
    // Each assigned name that ends up set is printed as NAME NUL VALUE NUL.
    const SCRIPT: &str = r#". "$1" >/dev/null || exit 1; shift
for __n in "$@"; do eval "__s=\${$__n+x}"; [ -n "$__s" ] || continue
eval "printf '%s\0%s\0' \"\$__n\" \"\${$__n}\""; done"#;
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("sh")
        .arg(file)
        .args(names)
        .env("APPTAINER_IMAGE", image)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("while evaluating env file {:?}", file.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        bail!(
            "while evaluating env file {:?}: {}",
            file.display(),
            msg.trim()
        );
    }
    let fields: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    Ok(fields
        .chunks_exact(2)
        .map(|kv| {
            (
                String::from_utf8_lossy(kv[0]).into_owned(),
                String::from_utf8_lossy(kv[1]).into_owned(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn rt() -> RuntimeVars {
        RuntimeVars {
            container: "/img/x.sif".into(),
            name: "x.sif".into(),
            command: "exec".into(),
            home: "/home/u".into(),
            ..Default::default()
        }
    }

    fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
        vars.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn host_variables_pass_except_home_path_and_apptainer_ones() {
        let h = host(&[
            ("FOO", "1"),
            ("HOME", "/host/home"),
            ("PATH", "/host/bin"),
            ("LD_LIBRARY_PATH", "/x"),
            ("APPTAINER_BIND", "/a"),
            ("APPTAINERENV_BAR", "2"),
            ("BASH_FUNC_f%%", "() { :; }"),
        ]);
        let env = compute(&h, &EnvRequest::default(), &rt()).unwrap();
        assert_eq!(get(&env.process, "FOO"), Some("1"));
        assert_eq!(get(&env.process, "HOME"), Some("/home/u"));
        assert_eq!(get(&env.process, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(get(&env.process, "LD_LIBRARY_PATH"), None);
        assert_eq!(get(&env.process, "APPTAINER_BIND"), None);
        assert_eq!(get(&env.process, "APPTAINERENV_BAR"), None);
        assert_eq!(get(&env.process, "APPTAINER_CONTAINER"), Some("/img/x.sif"));
        assert_eq!(get(&env.process, "SINGULARITY_NAME"), Some("x.sif"));
        assert_eq!(get(&env.process, "APPTAINER_COMMAND"), Some("exec"));
        assert!(env.process.iter().all(|(k, _)| is_env_name(k)));
        assert_eq!(env.overrides, [("BAR".to_string(), "2".to_string())]);
    }

    #[test]
    fn cleanenv_keeps_only_term_and_proxies_and_sets_lang_c() {
        let h = host(&[
            ("FOO", "1"),
            ("TERM", "xterm"),
            ("https_proxy", "p"),
            ("APPTAINERENV_X", "y"),
        ]);
        let req = EnvRequest {
            cleanenv: true,
            ..Default::default()
        };
        let env = compute(&h, &req, &rt()).unwrap();
        assert_eq!(get(&env.process, "FOO"), None);
        assert_eq!(get(&env.process, "TERM"), Some("xterm"));
        assert_eq!(get(&env.process, "https_proxy"), Some("p"));
        assert_eq!(get(&env.process, "LANG"), Some("C"));
        assert_eq!(env.overrides, [("X".to_string(), "y".to_string())]);
    }

    #[test]
    fn env_flag_beats_env_file_which_beats_apptainerenv() {
        let h = host(&[("APPTAINERENV_A", "env"), ("APPTAINERENV_B", "env")]);
        let req = EnvRequest {
            env_file: vec![("A".into(), "file".into()), ("C".into(), "file".into())],
            env: vec![("C".into(), "flag".into())],
            ..Default::default()
        };
        let env = compute(&h, &req, &rt()).unwrap();
        let mut o = env.overrides.clone();
        o.sort();
        assert_eq!(
            o,
            [
                ("A".into(), "file".into()),
                ("B".into(), "env".into()),
                ("C".into(), "flag".into())
            ]
        );
    }

    #[test]
    fn path_overrides_become_user_defined_path_variables() {
        let h = host(&[
            ("APPTAINERENV_PREPEND_PATH", "/pre"),
            ("APPTAINERENV_HOME", "/nope"),
            ("APPTAINERENV_LD_LIBRARY_PATH", "/lib1"),
        ]);
        let env = compute(&h, &EnvRequest::default(), &rt()).unwrap();
        assert_eq!(
            get(&env.overrides, "SING_USER_DEFINED_PREPEND_PATH"),
            Some("/pre")
        );
        assert_eq!(get(&env.overrides, "HOME"), None);
        assert_eq!(
            get(&env.overrides, "LD_LIBRARY_PATH"),
            Some("/lib1:/.singularity.d/libs")
        );
        let flat = env.flattened();
        assert_eq!(
            get(&flat, "PATH"),
            Some(format!("/pre:{DEFAULT_PATH}").as_str())
        );
    }

    #[test]
    fn override_script_quotes_for_eval_or_literal() {
        let mut env = ContainerEnv {
            overrides: vec![("A".into(), r#"$(date) "q" it's\"#.into())],
            ..Default::default()
        };
        assert_eq!(
            env.overrides_script(),
            "export A=\"$(date) \\\"q\\\" it's\\\\\"\n"
        );
        env.overrides = vec![("B".into(), r#"a\"b"#.into())];
        assert_eq!(env.overrides_script(), "export B=\"a\\\"b\"\n");
        env.overrides = vec![("A".into(), r#"$(date) "q" it's\"#.into())];
        env.no_eval = true;
        assert_eq!(
            env.overrides_script(),
            "export A='$(date) \"q\" it'\\''s\\'\n"
        );
    }

    #[test]
    fn env_files_are_evaluated_with_the_host_shell() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(
            &f,
            "# comment\nA=1\nexport B=\"$A two\"\nC=$APPTAINER_IMAGE\nA=3\n",
        )
        .unwrap();
        let got = read_env_files(&[&f], "/i.sif").unwrap();
        assert_eq!(
            got,
            [
                ("A".to_string(), "3".to_string()),
                ("B".to_string(), "1 two".to_string()),
                ("C".to_string(), "/i.sif".to_string())
            ]
        );
        let bad = dir.path().join("missing");
        assert!(read_env_files(&[&bad], "/i.sif").is_err());
    }
}
