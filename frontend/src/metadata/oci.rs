//! Runscript and environment script of an image converted from OCI.
//!
//! Rules (from the reference's documentation and conversion):
//! - ENTRYPOINT only: run it with the user's arguments appended;
//! - CMD only: run CMD, or the user's arguments instead of it;
//! - both: run ENTRYPOINT followed by CMD, or by the user's arguments instead of CMD.
//!
//! By default the command line is rebuilt as a string and evaluated by the shell
//! (`eval "set ${SINGULARITY_OCI_RUN}"`, a line the runtime recognises), so `$VAR` in
//! ENTRYPOINT, CMD and arguments is expanded; with `--no-eval` (`SINGULARITY_NO_EVAL`
//! set) every element is passed through literally, as Docker does.

/// Shell escaping inside double quotes: `\`, `"`, `` ` `` and `$`.
pub fn escape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Makes `s` safe between single quotes (each `'` becomes `'"'"'`).
pub fn escape_single(s: &str) -> String {
    s.replace('\'', r#"'"'"'"#)
}

/// Each argument double-quoted and escaped, space separated.
fn args_quoted(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("\"{}\"", escape_double(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `set -- 'elem' "$@"` lines that put `args` in front of the positional parameters.
fn prepend(args: &[String], indent: &str) -> String {
    args.iter()
        .rev()
        .map(|a| format!("{indent}set -- '{}' \"$@\"\n", escape_single(a)))
        .collect()
}

/// The `/.singularity.d/runscript` of an image with this ENTRYPOINT and CMD.
pub fn oci_runscript(entrypoint: &[String], cmd: &[String]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += &format!(
        "OCI_ENTRYPOINT='{}'\n",
        escape_single(&args_quoted(entrypoint))
    );
    s += &format!("OCI_CMD='{}'\n", escape_single(&args_quoted(cmd)));
    s += "\n# --no-eval: pass ENTRYPOINT, CMD and arguments through literally, as Docker does.\n";
    s += "if [ -n \"$SINGULARITY_NO_EVAL\" ]; then\n";
    match (entrypoint.is_empty(), cmd.is_empty()) {
        (false, true) => s += &prepend(entrypoint, "    "),
        (true, false) => {
            s += "    if [ $# -eq 0 ]; then\n";
            s += &prepend(cmd, "        ");
            s += "    fi\n";
        }
        (false, false) => {
            s += "    if [ $# -eq 0 ]; then\n";
            s += &prepend(cmd, "        ");
            s += "    fi\n";
            s += &prepend(entrypoint, "    ");
        }
        (true, true) => {}
    }
    s += NO_COMMAND_CHECK;
    s += "    exec \"$@\"\nfi\n";
    s += EVAL_TAIL;
    s
}

const NO_COMMAND_CHECK: &str = r#"    if [ $# -eq 0 ]; then
        echo "No command to run: the image sets no ENTRYPOINT or CMD and no arguments were given" >&2
        exit 1
    fi
"#;

/// Default mode. The words are joined into one string and evaluated, so the arguments
/// are double-quoted here (and any `"` or `$` in them is still expanded, as documented).
/// The leading `--` keeps an argument starting with `-` from being read as a `set` option.
const EVAL_TAIL: &str = r#"
# Default: build the command line as a string and let the shell evaluate it.
CMDLINE_ARGS=""
for arg in "$@"; do
    CMDLINE_ARGS="${CMDLINE_ARGS} \"$arg\""
done
if [ $# -gt 0 ]; then
    SINGULARITY_OCI_RUN="-- ${OCI_ENTRYPOINT} ${CMDLINE_ARGS}"
else
    SINGULARITY_OCI_RUN="-- ${OCI_ENTRYPOINT} ${OCI_CMD}"
fi
eval "set ${SINGULARITY_OCI_RUN}"
if [ $# -eq 0 ]; then
    echo "No command to run: the image sets no ENTRYPOINT or CMD and no arguments were given" >&2
    exit 1
fi
exec "$@"
"#;

/// Whether `name` may be exported by a POSIX shell.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `/.singularity.d/env/10-docker2singularity.sh` from the config's `Env` (`K=V` items).
/// `PATH` is set outright; other variables keep a value given at run time
/// (`APPTAINERENV_K`, `--env`), else take the image's. Invalid names are skipped.
pub fn docker_env_script(env: &[String]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    for item in env {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (item.as_str(), None),
        };
        if !is_valid_name(name) {
            continue;
        }
        s += &match value {
            None => format!("export {name}=\"${{{name}:-}}\"\n"),
            Some(v) if name == "PATH" => format!("export {name}=\"{}\"\n", escape_double(v)),
            Some(v) => format!("export {name}=\"${{{name}:-\"{}\"}}\"\n", escape_double(v)),
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Runs the runscript with `sh`, where `exec` is replaced by printing each argument
    /// on its own line, so the final argv can be compared.
    fn argv(script: &str, args: &[&str], no_eval: bool) -> Vec<String> {
        let script = script.replace("exec \"$@\"", "printf '%s\\n' \"$@\"; exit 0");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&script).arg("runscript").args(args);
        cmd.env_remove("SINGULARITY_NO_EVAL").env("HOSTVAR", "host");
        if no_eval {
            cmd.env("SINGULARITY_NO_EVAL", "1");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn entrypoint_only_appends_the_arguments() {
        let s = oci_runscript(&v(&["date"]), &[]);
        assert_eq!(argv(&s, &[], false), ["date"]);
        assert_eq!(argv(&s, &["--utc"], false), ["date", "--utc"]);
        assert_eq!(argv(&s, &["--utc"], true), ["date", "--utc"]);
    }

    #[test]
    fn cmd_only_is_replaced_by_the_arguments() {
        let s = oci_runscript(&[], &v(&["date"]));
        assert_eq!(argv(&s, &[], false), ["date"]);
        assert_eq!(argv(&s, &["echo", "hello"], false), ["echo", "hello"]);
        assert_eq!(argv(&s, &["echo", "hello"], true), ["echo", "hello"]);
        assert_eq!(argv(&s, &[], true), ["date"]);
    }

    #[test]
    fn entrypoint_and_cmd_give_cmd_as_default_arguments() {
        let s = oci_runscript(&v(&["date"]), &v(&["--utc"]));
        assert_eq!(argv(&s, &[], false), ["date", "--utc"]);
        assert_eq!(argv(&s, &["-R"], false), ["date", "-R"]);
        assert_eq!(argv(&s, &[], true), ["date", "--utc"]);
        assert_eq!(argv(&s, &["-R"], true), ["date", "-R"]);
    }

    #[test]
    fn default_mode_evaluates_and_no_eval_keeps_arguments_literal() {
        let s = oci_runscript(&v(&["echo"]), &[]);
        assert_eq!(argv(&s, &["$HOSTVAR"], false), ["echo", "host"]);
        assert_eq!(argv(&s, &["$HOSTVAR"], true), ["echo", "$HOSTVAR"]);
        // An argument starting with `-` is not taken as an option of `set`.
        let s = oci_runscript(&[], &v(&["true"]));
        assert_eq!(argv(&s, &["-la"], false), ["-la"]);
    }

    #[test]
    fn quotes_and_spaces_in_entrypoint_and_cmd_survive() {
        let ep = v(&["sh", "-c", "echo 'it''s' \"$0\""]);
        let cmd = v(&["a b", "c'd", "e\"f", "`g`", "\\h"]);
        let s = oci_runscript(&ep, &cmd);
        assert_eq!(argv(&s, &[], true), [&ep[..], &cmd[..]].concat());
        assert_eq!(argv(&s, &[], false), [&ep[..], &cmd[..]].concat());
    }

    #[test]
    fn no_entrypoint_or_cmd_runs_the_arguments_or_fails_clearly() {
        let s = oci_runscript(&[], &[]);
        assert_eq!(argv(&s, &["echo", "x"], false), ["echo", "x"]);
        assert_eq!(argv(&s, &["echo", "x"], true), ["echo", "x"]);
        let out = Command::new("sh").arg("-c").arg(&s).output().unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn env_script_quotes_values_and_lets_path_be_set_outright() {
        let s = docker_env_script(&v(&[
            "PATH=/usr/local/bin:/usr/bin",
            "A=x \"y\" $z `w` \\",
            "EMPTY",
            "1BAD=no",
            "B=c=d",
        ]));
        assert_eq!(
            s,
            "#!/bin/sh\n\
             export PATH=\"/usr/local/bin:/usr/bin\"\n\
             export A=\"${A:-\"x \\\"y\\\" \\$z \\`w\\` \\\\\"}\"\n\
             export EMPTY=\"${EMPTY:-}\"\n\
             export B=\"${B:-\"c=d\"}\"\n"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{s}\nprintf '%s|%s|%s' \"$A\" \"$B\" \"$PATH\""))
            .env_remove("A")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "x \"y\" $z `w` \\|c=d|/usr/local/bin:/usr/bin"
        );
    }
}
