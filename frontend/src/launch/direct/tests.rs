//! Differential tests: the same inputs through action.sh on the host's `/bin/sh` (with the
//! env directory moved to a temporary one) and through `environment`, which must agree
//! variable for variable, or decline.

use super::*;
use crate::launch::action::tests::container_env;
use crate::launch::action::{through_shell, Action, ScriptOptions};
use crate::launch::environment::EnvRequest;

const ENV_DIR: &str = "/.singularity.d/env";

/// The env scripts every image we make has, plus a docker env script with `docker`'s items.
fn image_scripts(docker: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = metadata::base_files()
        .into_iter()
        .filter_map(|f| {
            let name = f.path.strip_prefix(".singularity.d/env/")?;
            Some((name.to_string(), f.content))
        })
        .collect();
    let items: Vec<String> = docker.iter().map(|s| s.to_string()).collect();
    out.push((
        "10-docker2singularity.sh".into(),
        metadata::docker_env_script(&items),
    ));
    out
}

/// What action.sh gives `/usr/bin/env -0`, with the scripts in a temporary directory.
fn through_the_shell(scripts: &[(String, String)], env: &ContainerEnv) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("env");
    std::fs::create_dir(&env_dir).unwrap();
    for (name, text) in scripts {
        std::fs::write(env_dir.join(name), text).unwrap();
    }
    let env_dir = env_dir.to_str().unwrap();
    let args = ["/usr/bin/env".to_string(), "-0".to_string()];
    let p = through_shell(Action::Exec, &args, env, &ScriptOptions::default());
    let argv: Vec<String> = p.argv.iter().map(|a| a.replace(ENV_DIR, env_dir)).collect();
    let out = std::process::Command::new(&p.path)
        .args(&argv[1..])
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace(env_dir, ENV_DIR);
    let cwd = dir.path().to_str().unwrap();
    text.split_terminator('\0')
        .map(|kv| kv.split_once('=').unwrap())
        .map(|(k, v)| (k.to_string(), v.replace(cwd, "/cwd")))
        .collect()
}

fn direct(scripts: &[(String, String)], env: &ContainerEnv) -> Option<BTreeMap<String, String>> {
    environment(scripts, env, "/cwd").map(|v| v.into_iter().collect())
}

fn same(scripts: &[(String, String)], env: &ContainerEnv) -> BTreeMap<String, String> {
    let shell = through_the_shell(scripts, env);
    let ours = direct(scripts, env).expect("the fast path should take these scripts");
    assert_eq!(ours, shell);
    ours
}

const DOCKER_ITEMS: &[&str] = &[
    "PATH=/opt/tool/bin:/usr/local/bin:/usr/bin:/bin",
    "PLAIN=value with spaces",
    "QUOTES=a \"quoted\" 'single' value",
    "DOLLAR=$HOME and ${HOME} and `date` and \\n and \\",
    "EMPTY=",
    "NOVALUE",
    "UNICODE=héllo wörld",
    "BRACES=a{b}c",
    "FROMHOST=image value",
    "LANG=C.UTF-8",
];

#[test]
fn a_pulled_images_scripts_give_what_the_shell_gives() {
    let scripts = image_scripts(DOCKER_ITEMS);
    let host = [
        ("FOO", "bar"),
        ("FROMHOST", "host value"),
        ("EMPTYHOST", ""),
        ("LANG", "en_US.UTF-8"),
        ("TERM", "xterm"),
        ("PWD", "/somewhere/else"),
    ];
    let got = same(&scripts, &container_env(&host, EnvRequest::default()));
    let get = |k: &str| got.get(k).map(String::as_str);
    assert_eq!(
        get("FROMHOST"),
        Some("image value"),
        "the image beats the host"
    );
    assert_eq!(get("FOO"), Some("bar"));
    assert_eq!(get("EMPTYHOST"), Some(""));
    assert_eq!(
        get("DOLLAR"),
        Some("$HOME and ${HOME} and `date` and \\n and \\")
    );
    assert_eq!(
        get("PATH"),
        Some("/opt/tool/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
    );
    assert_eq!(get("PWD"), Some("/cwd"));
}

#[test]
fn overrides_path_changes_and_prompts_give_what_the_shell_gives() {
    let scripts = image_scripts(DOCKER_ITEMS);
    let host = [
        ("APPTAINERENV_FOO", "from override"),
        ("APPTAINERENV_FROMHOST", "overridden"),
        ("APPTAINERENV_PREPEND_PATH", "/pre"),
        ("APPTAINERENV_APPEND_PATH", "/post"),
        ("APPTAINERENV_LD_LIBRARY_PATH", "/mylib"),
        ("PS1", "host> "),
        ("PROMPT_COMMAND", "history -a"),
        ("LD_LIBRARY_PATH", "/host/lib"),
    ];
    same(&scripts, &container_env(&host, EnvRequest::default()));
    let req = EnvRequest {
        env: vec![("PATH".into(), "/only/this".into())],
        ..Default::default()
    };
    same(&scripts, &container_env(&host, req));
}

#[test]
fn no_eval_cleanenv_and_a_bare_image_give_what_the_shell_gives() {
    let host = [
        ("APPTAINERENV_X", "$(echo no) `x` \\$y"),
        ("FOO", "bar"),
        ("TERM", "dumb"),
    ];
    let req = EnvRequest {
        no_eval: true,
        cleanenv: true,
        ..Default::default()
    };
    same(&image_scripts(DOCKER_ITEMS), &container_env(&host, req));
    // An image with no env scripts at all (a bare /.singularity.d/env).
    same(&[], &container_env(&host[1..], EnvRequest::default()));
    let only_base: Vec<_> = image_scripts(&[])
        .into_iter()
        .filter(|(n, _)| n != "10-docker2singularity.sh" && n != "99-runtimevars.sh")
        .collect();
    let req = EnvRequest {
        env: vec![("PREPEND_PATH".into(), "/p".into())],
        ..Default::default()
    };
    same(&only_base, &container_env(&[], req));
}

#[test]
fn what_only_a_shell_can_evaluate_goes_through_the_shell() {
    let env = container_env(&[], EnvRequest::default());
    let mut custom = image_scripts(&[]);
    for (name, text) in custom.iter_mut() {
        if name == "90-environment.sh" {
            *text = "#!/bin/sh\nexport A=$(uname)\n".into();
        }
    }
    assert!(direct(&custom, &env).is_none());
    let mut unknown = image_scripts(&[]);
    unknown.push(("50-site.sh".into(), String::new()));
    assert!(direct(&unknown, &env).is_none());
    let expands = container_env(&[("APPTAINERENV_A", "$HOME/x")], EnvRequest::default());
    assert!(direct(&image_scripts(&[]), &expands).is_none());
    for line in [
        "export A=unquoted\n",
        "export A=\"$B\"\n",
        "export A=\"x\" B=\"y\"\n",
        "A=\"x\"\n",
        "export A=\"multi\nline\"\n",
    ] {
        let mut s = image_scripts(&[]);
        s.retain(|(n, _)| n != "10-docker2singularity.sh");
        s.push((
            "10-docker2singularity.sh".into(),
            format!("#!/bin/sh\n{line}"),
        ));
        assert!(direct(&s, &env).is_none(), "{line:?}");
    }
}

#[test]
fn an_app_selected_in_the_environment_goes_through_the_shell() {
    let env = container_env(&[], EnvRequest::default());
    let mut s = image_scripts(&["SINGULARITY_APPNAME=x"]);
    s.sort();
    assert!(direct(&s, &env).is_none());
}
