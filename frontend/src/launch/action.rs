//! The container's first process: the image's `/bin/sh` running our action script
//! (`action.sh`), which sources `/.singularity.d/env/*.sh` and then execs the runscript, the
//! command, the shell or the test. Images without `/bin/sh` can only `exec`, directly.

use super::environment::ContainerEnv;
use std::fmt;

/// The embedded action script (our own; see its header for the inputs it reads).
pub const ACTION_SCRIPT: &str = include_str!("action.sh");

/// The four action commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Run,
    Exec,
    Shell,
    Test,
    /// `instance start`: the image's startscript.
    Start,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Run => "run",
            Action::Exec => "exec",
            Action::Shell => "shell",
            Action::Test => "test",
            Action::Start => "start",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the starter executes: an absolute path or a bare name it searches in the PATH of
/// `env`, argv (argv[0] included), the environment and the umask (the starter's 022 when
/// `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub path: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub umask: Option<u32>,
}

/// Extra inputs of the action script.
#[derive(Clone, Debug, Default)]
pub struct ScriptOptions {
    /// The umask the container process gets, set by the starter before it execs (the shell
    /// of the action script inherits it): the caller's, or 0022 with `--no-umask`. `None`
    /// leaves the starter's own 022.
    pub umask: Option<u32>,
    /// INFO messages hidden (`-q`, `-s`).
    pub quiet: bool,
}

/// The process that runs `action` with `args` through the image's `/bin/sh`.
pub fn through_shell(
    action: Action,
    args: &[String],
    env: &ContainerEnv,
    opts: &ScriptOptions,
) -> Process {
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        ACTION_SCRIPT.to_string(),
        format!("/.singularity.d/actions/{action}"),
    ];
    argv.extend(args.iter().cloned());
    let mut vars = env.process.clone();
    vars.push((
        "__APPTAINER_ENV_NAMES".into(),
        env.snapshot_names().join(" "),
    ));
    vars.push(("__APPTAINER_OVERRIDES".into(), env.overrides_script()));
    if opts.quiet {
        vars.push(("__APPTAINER_QUIET".into(), "1".into()));
    }
    Process {
        path: "/bin/sh".into(),
        argv,
        env: vars,
        umask: opts.umask,
    }
}

/// The process for `exec` without a shell: the command itself with `env`, executed by the
/// starter, which searches the absolute directories of the container's PATH for a bare name
/// and so only ever executes absolute paths. `None` (the shell decides) for a relative path
/// with a `/`, or a bare name with a relative directory (`.`, empty) in PATH: both resolve
/// against the container's working directory.
pub fn direct(
    command: &[String],
    env: Vec<(String, String)>,
    opts: &ScriptOptions,
) -> Option<Process> {
    let first = command.first()?;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let relative_dir = path.is_some_and(|p| p.split(':').any(|d| !d.starts_with('/')));
    if (first.contains('/') && !first.starts_with('/')) || (!first.contains('/') && relative_dir) {
        return None;
    }
    Some(Process {
        path: first.clone(),
        argv: command.to_vec(),
        env,
        umask: opts.umask,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    //! These run the script with the host's /bin/sh: the host has no /.singularity.d, so
    //! they check the environment snapshot/restore, the overrides and the exec branch.
    use super::*;
    use crate::launch::environment::{compute, EnvRequest, RuntimeVars};
    use std::ffi::OsString;
    use std::process::Command;

    fn run_script(process: &Process) -> std::process::Output {
        Command::new(&process.path)
            .args(&process.argv[1..])
            .env_clear()
            .envs(process.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// A computed environment for `exec` of /x.sif with HOME /home/u (also for direct.rs).
    pub(crate) fn container_env(host: &[(&str, &str)], req: EnvRequest) -> ContainerEnv {
        let host: Vec<(OsString, OsString)> = host
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        let rt = RuntimeVars {
            container: "/x.sif".into(),
            name: "x.sif".into(),
            command: "exec".into(),
            home: "/home/u".into(),
            ..Default::default()
        };
        compute(&host, &req, &rt).unwrap()
    }

    fn printenv(env: &ContainerEnv, names: &str) -> String {
        let args: Vec<String> = [
            "/bin/sh",
            "-c",
            &format!(
                "for n in {names}; do eval \"printf '%s=%s\\n' $n \\\"\\${{$n-unset}}\\\"\"; done"
            ),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = through_shell(Action::Exec, &args, env, &ScriptOptions::default());
        let out = run_script(&p);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn host_variables_and_overrides_reach_the_command() {
        let env = container_env(
            &[
                ("FOO", "a b\nc"),
                ("APPTAINERENV_BAR", "$HOME $FOO!"),
                ("EMPTY", ""),
            ],
            EnvRequest::default(),
        );
        let out = printenv(
            &env,
            "FOO BAR EMPTY HOME APPTAINER_NAME PS1 __APPTAINER_ENV_NAMES",
        );
        assert_eq!(
            out,
            "FOO=a b\nc\nBAR=/home/u !\nEMPTY=\nHOME=/home/u\nAPPTAINER_NAME=x.sif\nPS1=Apptainer> \n__APPTAINER_ENV_NAMES=unset\n"
        );
    }

    #[test]
    fn no_eval_keeps_override_values_literal() {
        let env = container_env(
            &[("APPTAINERENV_BAR", "$(echo hi) `x` \\$y")],
            EnvRequest {
                no_eval: true,
                ..Default::default()
            },
        );
        assert_eq!(printenv(&env, "BAR"), "BAR=$(echo hi) `x` \\$y\n");
    }

    #[test]
    fn prepend_path_is_applied_after_the_image_environment() {
        let env = container_env(
            &[("APPTAINERENV_PREPEND_PATH", "/opt/bin")],
            EnvRequest::default(),
        );
        let out = printenv(&env, "PATH SING_USER_DEFINED_PREPEND_PATH");
        assert_eq!(
            out,
            format!(
                "PATH=/opt/bin:{}\nSING_USER_DEFINED_PREPEND_PATH=unset\n",
                super::super::environment::DEFAULT_PATH
            )
        );
    }

    #[test]
    fn exit_status_and_missing_commands() {
        let env = container_env(&[], EnvRequest::default());
        let args: Vec<String> = ["/bin/sh", "-c", "exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = run_script(&through_shell(
            Action::Exec,
            &args,
            &env,
            &ScriptOptions::default(),
        ));
        assert_eq!(out.status.code(), Some(3));
        let args = vec!["no-such-command-here".to_string()];
        let out = run_script(&through_shell(
            Action::Exec,
            &args,
            &env,
            &ScriptOptions::default(),
        ));
        assert_eq!(out.status.code(), Some(255));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "FATAL:   \"no-such-command-here\": executable file not found in $PATH\n"
        );
    }

    #[test]
    fn direct_exec_takes_absolute_paths_and_bare_names_with_the_callers_umask() {
        let env = container_env(&[("APPTAINERENV_A", "$B")], EnvRequest::default());
        let opts = ScriptOptions {
            umask: Some(0o027),
            quiet: false,
        };
        assert!(direct(&["bin/ls".into()], env.flattened(), &opts).is_none());
        assert_eq!(
            direct(&["ls".into()], env.flattened(), &opts).unwrap().path,
            "ls"
        );
        let p = direct(&["/bin/ls".into(), "-l".into()], env.flattened(), &opts).unwrap();
        assert_eq!(p.argv, ["/bin/ls", "-l"]);
        for path in ["/bin:.", ":/bin", "bin:/usr/bin"] {
            let mut vars = env.flattened();
            vars.retain(|(k, _)| k != "PATH");
            vars.push(("PATH".into(), path.into()));
            assert!(
                direct(&["ls".into()], vars.clone(), &opts).is_none(),
                "{path}"
            );
            assert!(direct(&["/bin/ls".into()], vars, &opts).is_some(), "{path}");
        }
        assert_eq!(p.umask, Some(0o027));
        assert!(p.env.contains(&("A".into(), "$B".into())));
    }
}
