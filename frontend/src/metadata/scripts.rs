//! The fixed files of `/.singularity.d`: action scripts and environment scripts.
//!
//! Behaviour matches the reference's scripts (which the runtime and `inspect` rely on);
//! the wording is ours.

/// A file every image gets: path relative to `/`, permission bits, content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseFile {
    pub path: &'static str,
    pub mode: u32,
    pub content: String,
}

/// Directories every image has (made if missing, left alone if present).
pub const BASE_DIRS: &[&str] = &[
    ".singularity.d/libs",
    ".singularity.d/actions",
    ".singularity.d/env",
    "dev",
    "proc",
    "root",
    "var/tmp",
    "tmp",
    "etc",
    "sys",
    "home",
];

/// `(name at /, target)`: the legacy entry points older tools look for.
pub const ROOT_SYMLINKS: &[(&str, &str)] = &[
    ("singularity", ".singularity.d/runscript"),
    (".run", ".singularity.d/actions/run"),
    (".exec", ".singularity.d/actions/exec"),
    (".test", ".singularity.d/actions/test"),
    (".shell", ".singularity.d/actions/shell"),
    ("environment", ".singularity.d/env/90-environment.sh"),
];

const SOURCE_ENV: &str = r#"for script in /.singularity.d/env/*.sh; do
    if [ -f "$script" ]; then
        . "$script"
    fi
done
"#;

const EXEC: &str = r#"#!/bin/sh
# Runs the given command once the container environment is loaded.
@ENV@
exec "$@"
"#;

const RUN: &str = r#"#!/bin/sh
# Runs the app's runscript, the container's runscript, or a shell.
@ENV@
if [ -n "${SINGULARITY_APPNAME:-}" ]; then
    if [ -x "/scif/apps/${SINGULARITY_APPNAME:-}/scif/runscript" ]; then
        exec "/scif/apps/${SINGULARITY_APPNAME:-}/scif/runscript" "$@"
    elif [ -x "/scif/apps/singularity/scif/runscript" ]; then
        exec "/scif/apps/singularity/scif/runscript" "$@"
    fi
    echo "No Apptainer runscript for contained app: ${SINGULARITY_APPNAME:-}"
    exit 1
elif [ -x "/.singularity.d/runscript" ]; then
    exec "/.singularity.d/runscript" "$@"
fi
echo "No Apptainer runscript found, executing /bin/sh"
exec /bin/sh "$@"
"#;

const SHELL: &str = r#"#!/bin/sh
# Starts $SINGULARITY_SHELL, else bash without rc files, else sh.
@ENV@
if [ -n "$SINGULARITY_SHELL" ] && [ -x "$SINGULARITY_SHELL" ]; then
    exec $SINGULARITY_SHELL "$@"
    echo "ERROR: Failed running shell as defined by '\$SINGULARITY_SHELL'" 1>&2
    exit 1
elif [ -x /bin/bash ]; then
    SHELL=/bin/bash
    PS1="Apptainer $APPTAINER_NAME:\\w> "
    export SHELL PS1
    exec /bin/bash --norc "$@"
elif [ -x /bin/sh ]; then
    SHELL=/bin/sh
    export SHELL
    exec /bin/sh "$@"
fi
echo "ERROR: /bin/sh does not exist in container" 1>&2
exit 1
"#;

const START: &str = r#"#!/bin/sh
# Instance start: let PID 1 go on, then run the startscript.
# PID 1 waits for this signal; keep it first.
kill -CONT 1
@ENV@
if [ -x "/.singularity.d/startscript" ]; then
    exec "/.singularity.d/startscript"
fi
"#;

const TEST: &str = r#"#!/bin/sh
# Runs the app's test, the container's test, or a no-op.
@ENV@
if [ -n "${SINGULARITY_APPNAME:-}" ]; then
    if [ -x "/scif/apps/${SINGULARITY_APPNAME:-}/scif/test" ]; then
        exec "/scif/apps/${SINGULARITY_APPNAME:-}/scif/test" "$@"
    elif [ -x "/scif/apps/singularity/scif/test" ]; then
        exec "/scif/apps/singularity/scif/test" "$@"
    fi
    echo "No tests for contained app: ${SINGULARITY_APPNAME:-}"
    exit 1
elif [ -x "/.singularity.d/test" ]; then
    exec "/.singularity.d/test" "$@"
fi
echo "No test found in container, executing /bin/sh -c true"
exec /bin/sh -c true
"#;

pub const ENV_01_BASE: &str = "#!/bin/sh\n# Base environment of the container (nothing to set).\n";

pub const ENV_90_ENVIRONMENT: &str = "#!/bin/sh\n# Custom environment shell code should follow\n";

pub const ENV_94_APPSBASE: &str =
    "#!/bin/sh\n# SCIF_APP* variables of the container's apps (none).\n";

pub const ENV_95_APPS: &str = r#"#!/bin/sh
# Environment of the app selected with --app.
if [ -n "${SINGULARITY_APPNAME:-}" ]; then
    export SINGULARITY_APPNAME
    if [ -d "/scif/apps/${SINGULARITY_APPNAME:-}/" ]; then
        SCIF_APPS="/scif/apps"
        SCIF_APPROOT="/scif/apps/${SINGULARITY_APPNAME:-}"
        export SCIF_APPROOT SCIF_APPS
        PATH="/scif/apps/${SINGULARITY_APPNAME:-}:/scif/apps/singularity:$PATH"
        if [ -d "/scif/apps/${SINGULARITY_APPNAME:-}/bin" ]; then
            PATH="/scif/apps/${SINGULARITY_APPNAME:-}/bin:$PATH"
        elif [ -d "/scif/apps/singularity/bin" ]; then
            PATH="/scif/apps/singularity/bin:$PATH"
        fi
        if [ -d "/scif/apps/${SINGULARITY_APPNAME:-}/lib" ]; then
            LD_LIBRARY_PATH="/scif/apps/${SINGULARITY_APPNAME:-}/lib:$LD_LIBRARY_PATH"
            export LD_LIBRARY_PATH
        elif [ -d "/scif/apps/singularity/lib" ]; then
            LD_LIBRARY_PATH="/scif/apps/singularity/lib:$LD_LIBRARY_PATH"
            export LD_LIBRARY_PATH
        fi
        for f in 01-base.sh 90-environment.sh; do
            if [ -f "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/$f" ]; then
                . "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/$f"
            elif [ -f "/scif/apps/singularity/scif/env/$f" ]; then
                . "/scif/apps/singularity/scif/env/$f"
            fi
        done
        export PATH
    else
        echo "Could not locate the container application: ${SINGULARITY_APPNAME}"
        exit 1
    fi
fi
"#;

pub const ENV_99_BASE: &str = r#"#!/bin/sh
# Host libraries bound in by --nv/--rocm live in /.singularity.d/libs.
if [ -z "${LD_LIBRARY_PATH:-}" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi
if [ -z "${PS1:-}" ]; then
    PS1="Apptainer> "
fi
export LD_LIBRARY_PATH PS1
"#;

pub const ENV_99_RUNTIMEVARS: &str = r#"#!/bin/sh
# PATH changes asked for with APPTAINERENV_PREPEND_PATH, _APPEND_PATH and _PATH.
if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PREPEND_PATH}:${PATH}"
fi
if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
    PATH="${PATH}:${SING_USER_DEFINED_APPEND_PATH}"
fi
if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PATH}"
fi
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH
export PATH
"#;

const STARTSCRIPT: &str = "#!/bin/sh\n";

/// Every fixed file, with the action scripts' environment loop filled in.
pub fn base_files() -> Vec<BaseFile> {
    let action = |t: &str| t.replace("@ENV@\n", SOURCE_ENV);
    let files: [(&'static str, u32, String); 14] = [
        ("etc/hosts", 0o644, String::new()),
        ("etc/resolv.conf", 0o644, String::new()),
        (".singularity.d/actions/exec", 0o755, action(EXEC)),
        (".singularity.d/actions/run", 0o755, action(RUN)),
        (".singularity.d/actions/shell", 0o755, action(SHELL)),
        (".singularity.d/actions/start", 0o755, action(START)),
        (".singularity.d/actions/test", 0o755, action(TEST)),
        (".singularity.d/env/01-base.sh", 0o755, ENV_01_BASE.into()),
        (
            ".singularity.d/env/90-environment.sh",
            0o755,
            ENV_90_ENVIRONMENT.into(),
        ),
        (
            ".singularity.d/env/94-appsbase.sh",
            0o755,
            ENV_94_APPSBASE.into(),
        ),
        (".singularity.d/env/95-apps.sh", 0o755, ENV_95_APPS.into()),
        (".singularity.d/env/99-base.sh", 0o755, ENV_99_BASE.into()),
        (
            ".singularity.d/env/99-runtimevars.sh",
            0o755,
            ENV_99_RUNTIMEVARS.into(),
        ),
        (".singularity.d/startscript", 0o755, STARTSCRIPT.into()),
    ];
    files
        .into_iter()
        .map(|(path, mode, content)| BaseFile {
            path,
            mode,
            content,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn every_script_is_valid_sh() {
        for f in base_files() {
            if !f.content.starts_with("#!/bin/sh") {
                continue;
            }
            let out = Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&f.content)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                f.path,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn exec_action_loads_env_scripts_then_runs_the_command() {
        let exec = base_files()
            .into_iter()
            .find(|f| f.path.ends_with("actions/exec"))
            .unwrap()
            .content;
        assert!(exec.contains(". \"$script\""));
        assert!(exec.trim_end().ends_with("exec \"$@\""));
    }
}
