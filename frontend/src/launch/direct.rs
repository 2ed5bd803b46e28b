//! `exec` without the image's `/bin/sh`. The action script (`action.sh`) spends a shell start,
//! the decompression of the shell's binary and the reading of seven small scripts on every
//! start, about 3 ms of a 20 ms start. When every file in `/.singularity.d/env` is one whose
//! effect we know exactly (the ones we generate, and docker env scripts made only of the
//! three `export` shapes we and the reference write), or the image has none at all (a plain
//! root filesystem without `/environment`), the frontend evaluates them here with
//! action.sh's rules and the starter executes the command itself, searching the container's
//! PATH as `execvp` does. Anything else (a user's `%environment`, apps, overrides the shell
//! would expand) goes through the shell as before, so the result never differs; the unit
//! tests compare both on the host's `/bin/sh`.

use super::environment::{ContainerEnv, DEFAULT_PATH};
use crate::metadata;
use std::collections::BTreeMap;

/// Env script names the fast path accepts, in the order `/.singularity.d/env/*.sh` sorts
/// them. Other names might sort differently under the image shell's locale.
const KNOWN_NAMES: [&str; 8] = [
    "01-base.sh",
    "10-docker.sh",
    "10-docker2singularity.sh",
    "90-environment.sh",
    "94-appsbase.sh",
    "95-apps.sh",
    "99-base.sh",
    "99-runtimevars.sh",
];

/// Snapshot names action.sh leaves visible to the env scripts.
const VISIBLE: [&str; 7] = [
    "PWD",
    "HOME",
    "OPTIND",
    "SINGULARITY_APPNAME",
    "SINGULARITY_SHELL",
    "APPTAINER_NAME",
    "APPTAINER_CONTAINER",
];

const USER_PATH_VARS: [&str; 3] = [
    "SING_USER_DEFINED_PREPEND_PATH",
    "SING_USER_DEFINED_APPEND_PATH",
    "SING_USER_DEFINED_PATH",
];

/// An env script we can evaluate.
enum Script {
    Noop,
    /// 95-apps.sh: nothing unless an app is selected.
    Apps,
    Base,
    RuntimeVars,
    Docker(Vec<(String, Assign)>),
}

/// The right-hand sides of a docker env script line `export NAME="..."`.
enum Assign {
    /// `"${NAME:-}"`
    Keep,
    /// `"value"`
    Set(String),
    /// `"${NAME:-"value"}"`
    Default(String),
}

/// The environment `exec` gives the command, evaluated as action.sh would, or `None` when
/// only the shell can tell. `scripts` are the env files (name, text); `cwd` is the
/// container's working directory (the shell exports it as `PWD`).
pub fn environment(
    scripts: &[(String, String)],
    env: &ContainerEnv,
    cwd: &str,
) -> Option<Vec<(String, String)>> {
    let literal = |v: &String| !v.contains(['$', '`', '\\']);
    if !env.no_eval && !env.overrides.iter().all(|(_, v)| literal(v)) {
        return None;
    }
    let mut parsed = Vec::new();
    for (name, text) in scripts {
        KNOWN_NAMES.contains(&name.as_str()).then_some(())?;
        parsed.push((name.as_str(), classify(text)?));
    }
    parsed.sort_by_key(|(name, _)| *name);
    let mut sh = Shell::new(&env.process);
    let names = env.snapshot_names();
    let saved: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, sh.get(n).unwrap_or_default().to_string()))
        .collect();
    for n in names.iter().filter(|n| !VISIBLE.contains(n)) {
        sh.unset(n);
    }
    let mut injected = false;
    for (name, script) in &parsed {
        if *name == "90-environment.sh" && sh.get("PATH").is_none() {
            sh.fixpath();
        }
        sh.run(script)?;
        match *name {
            "10-docker2singularity.sh" | "10-docker.sh" => sh.fixpath(),
            "99-base.sh" => sh.inject(env, &mut injected),
            _ => {}
        }
    }
    sh.inject(env, &mut injected);
    if !parsed.iter().any(|(n, _)| *n == "99-runtimevars.sh") {
        sh.user_path();
    }
    USER_PATH_VARS.iter().for_each(|n| sh.unset(n));
    for (n, value) in saved {
        match sh.get(n) {
            None => sh.export(n, value),
            Some("") => sh.unset(n),
            Some(_) => {}
        }
    }
    sh.finish(cwd);
    Some(sh.exported())
}

fn classify(text: &str) -> Option<Script> {
    use metadata::{ENV_01_BASE, ENV_90_ENVIRONMENT, ENV_94_APPSBASE};
    Some(match text {
        t if [ENV_01_BASE, ENV_90_ENVIRONMENT, ENV_94_APPSBASE].contains(&t) => Script::Noop,
        t if t == metadata::ENV_95_APPS => Script::Apps,
        t if t == metadata::ENV_99_BASE => Script::Base,
        t if t == metadata::ENV_99_RUNTIMEVARS => Script::RuntimeVars,
        t => Script::Docker(docker_lines(t)?),
    })
}

/// The lines of a docker env script: comments, blank lines and `export NAME="..."` in the
/// three shapes `metadata::docker_env_script` writes; anything else is `None`.
fn docker_lines(text: &str) -> Option<Vec<(String, Assign)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
        super::environment::is_env_name(name).then_some(())?;
        let inner = value.strip_prefix('"')?.strip_suffix('"')?;
        let default_prefix = format!("${{{name}:-\"");
        let assign = if inner == format!("${{{name}:-}}") {
            Assign::Keep
        } else if let Some(v) = inner.strip_prefix(&default_prefix) {
            Assign::Default(unescape(v.strip_suffix("\"}")?)?)
        } else {
            Assign::Set(unescape(inner)?)
        };
        out.push((name.to_string(), assign));
    }
    Some(out)
}

/// The value of double-quoted text without expansions: `\` before `\ " $` and a backquote
/// escapes it, before anything else it stays. An unescaped `$`, backquote or `"` means the
/// shell would do more than copy, so it is `None`. (A quoted `}` does not end `${X:-"..."}`
/// in dash, bash or busybox sh.)
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('\\' | '"' | '$' | '`') => out.push(e),
                other => out.extend(['\\', other]),
            },
            '$' | '`' | '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The shell's variables. Every one that matters here is exported: the process environment
/// is, and each script line we evaluate assigns with `export` or exports right after.
struct Shell(BTreeMap<String, String>);

impl Shell {
    fn new(process: &[(String, String)]) -> Shell {
        Shell(process.iter().cloned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn export(&mut self, name: &str, value: String) {
        self.0.insert(name.to_string(), value);
    }

    fn unset(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// `${NAME:-}` is empty for unset and empty variables alike.
    fn nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn run(&mut self, script: &Script) -> Option<()> {
        match script {
            Script::Noop => {}
            Script::Apps => self
                .nonempty("SINGULARITY_APPNAME")
                .is_none()
                .then_some(())?,
            Script::Base => {
                let ld = match self.nonempty("LD_LIBRARY_PATH") {
                    None => "/.singularity.d/libs".to_string(),
                    Some(v) => format!("{v}:/.singularity.d/libs"),
                };
                self.export("LD_LIBRARY_PATH", ld);
                let ps1 = self.nonempty("PS1").unwrap_or("Apptainer> ").to_string();
                self.export("PS1", ps1);
            }
            Script::RuntimeVars => {
                // Its `unset` of the three variables is the caller's, done once for every image.
                self.user_path();
            }
            Script::Docker(lines) => {
                for (name, assign) in lines {
                    let value = match (assign, self.nonempty(name)) {
                        (Assign::Keep, current) => current.unwrap_or_default().to_string(),
                        (Assign::Set(v), _) => v.clone(),
                        (Assign::Default(_), Some(current)) => current.to_string(),
                        (Assign::Default(v), None) => v.clone(),
                    };
                    self.export(name, value);
                }
            }
        }
        Some(())
    }

    /// action.sh's `__ap_fixpath`: the default directories missing from PATH are appended.
    fn fixpath(&mut self) {
        let mut path = self.get("PATH").unwrap_or_default().to_string();
        for dir in DEFAULT_PATH.split(':') {
            if !format!(":{path}:").contains(&format!(":{dir}:")) {
                path = if path.is_empty() {
                    dir.to_string()
                } else {
                    format!("{path}:{dir}")
                };
            }
        }
        self.export("PATH", path);
    }

    /// action.sh's `__ap_inject`: once, PATH defaulted, then the overrides.
    fn inject(&mut self, env: &ContainerEnv, done: &mut bool) {
        if std::mem::replace(done, true) {
            return;
        }
        if self.get("PATH").is_none() {
            self.export("PATH", DEFAULT_PATH.to_string());
        }
        for (k, v) in &env.overrides {
            self.export(k, v.clone());
        }
    }

    /// The PATH changes of `APPTAINERENV_PREPEND_PATH`, `_APPEND_PATH` and `_PATH`, then
    /// `export PATH`, as both 99-runtimevars.sh and action.sh (for images without it) do.
    fn user_path(&mut self) {
        let path = self.get("PATH").unwrap_or_default().to_string();
        let path = match self.nonempty(USER_PATH_VARS[0]) {
            Some(pre) => format!("{pre}:{path}"),
            None => path,
        };
        let path = match self.nonempty(USER_PATH_VARS[1]) {
            Some(app) => format!("{path}:{app}"),
            None => path,
        };
        let path = self
            .nonempty(USER_PATH_VARS[2])
            .map_or(path, str::to_string);
        self.export("PATH", path);
    }

    /// The end of action.sh before `exec`, and the `PWD` the shell exports.
    fn finish(&mut self, cwd: &str) {
        if self.nonempty("PS1").is_none() {
            self.export("PS1", "Apptainer> ".into());
        }
        let ps1 = self.get("PS1").unwrap_or_default().to_string();
        let prompt = match self.nonempty("PROMPT_COMMAND") {
            None => format!("PS1=\"{ps1}\"; unset PROMPT_COMMAND"),
            Some(pc) => format!(
                "{pc}; PROMPT_COMMAND=\"${{PROMPT_COMMAND%%; PROMPT_COMMAND=*}}\"; PS1=\"{ps1}\""
            ),
        };
        self.export("PROMPT_COMMAND", prompt);
        let environment = self
            .nonempty("APPTAINER_ENVIRONMENT")
            .unwrap_or("/.singularity.d/env/91-environment.sh")
            .to_string();
        self.export("APPTAINER_ENVIRONMENT", environment.clone());
        self.export("SINGULARITY_ENVIRONMENT", environment);
        self.export("PWD", cwd.to_string());
    }

    fn exported(self) -> Vec<(String, String)> {
        self.0.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
