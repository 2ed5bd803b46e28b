//! The header of a stage: `key: value` lines before the first section. Keys are
//! case-insensitive, a value ending in `\` continues on the next line (a literal `\n` just
//! before that `\` becomes a newline), `#` starts a comment. The bootstrap agents are a closed
//! set, each reading its own keys, as in the reference.

use super::error::{DefError, DefErrorKind};
use super::Line;

/// Every bootstrap agent the reference knows. The builder decides which ones it implements;
/// the parser accepts all of them so a file written for the reference parses here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Agent {
    Docker,
    DockerArchive,
    DockerDaemon,
    Oci,
    OciArchive,
    Localimage,
    Scratch,
    Oras,
    Library,
    Shub,
    Debootstrap,
    Yum,
    Dnf,
    Zypper,
    Busybox,
    Arch,
}

impl Agent {
    pub const ALL: [Agent; 16] = [
        Agent::Docker,
        Agent::DockerArchive,
        Agent::DockerDaemon,
        Agent::Oci,
        Agent::OciArchive,
        Agent::Localimage,
        Agent::Scratch,
        Agent::Oras,
        Agent::Library,
        Agent::Shub,
        Agent::Debootstrap,
        Agent::Yum,
        Agent::Dnf,
        Agent::Zypper,
        Agent::Busybox,
        Agent::Arch,
    ];

    /// The name written after `Bootstrap:`.
    pub fn name(self) -> &'static str {
        match self {
            Agent::Docker => "docker",
            Agent::DockerArchive => "docker-archive",
            Agent::DockerDaemon => "docker-daemon",
            Agent::Oci => "oci",
            Agent::OciArchive => "oci-archive",
            Agent::Localimage => "localimage",
            Agent::Scratch => "scratch",
            Agent::Oras => "oras",
            Agent::Library => "library",
            Agent::Shub => "shub",
            Agent::Debootstrap => "debootstrap",
            Agent::Yum => "yum",
            Agent::Dnf => "dnf",
            Agent::Zypper => "zypper",
            Agent::Busybox => "busybox",
            Agent::Arch => "arch",
        }
    }

    /// Case-insensitive, so `Bootstrap: Docker` works too (the reference would refuse it, and
    /// accepting more than it does breaks no file written for it).
    pub fn from_name(name: &str) -> Option<Agent> {
        Agent::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The header keys (lower case) this agent reads, besides `bootstrap`, `stage` and
    /// `includecmd`, which every stage may have. `otherurl` stands for `otherurl<n>`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Agent::Docker
            | Agent::DockerArchive
            | Agent::DockerDaemon
            | Agent::Oci
            | Agent::OciArchive => &["from", "registry", "namespace"],
            Agent::Library => &["from", "library", "fingerprints"],
            Agent::Localimage => &["from", "fingerprints"],
            Agent::Oras | Agent::Shub => &["from"],
            Agent::Yum | Agent::Dnf => {
                &["osversion", "mirrorurl", "updateurl", "include", "setopt"]
            }
            Agent::Debootstrap => &["osversion", "mirrorurl", "include"],
            Agent::Zypper => &[
                "osversion",
                "mirrorurl",
                "updateurl",
                "include",
                "product",
                "user",
                "regcode",
                "productpgp",
                "registerurl",
                "modules",
                "otherurl",
            ],
            Agent::Arch => &["include", "confurl"],
            Agent::Busybox => &["mirrorurl"],
            Agent::Scratch => &[],
        }
    }

    /// Agents that start from an existing image cannot do anything without `From:`.
    pub fn needs_from(self) -> bool {
        self.keys().first() == Some(&"from")
    }
}

/// Every header key the reference accepts, lower case, with the spelling used when a
/// definition file is rendered back. `otherurl` only with a number after it.
const KEYS: [(&str, &str); 25] = [
    ("bootstrap", "Bootstrap"),
    ("from", "From"),
    ("includecmd", "IncludeCmd"),
    ("mirrorurl", "MirrorURL"),
    ("updateurl", "UpdateURL"),
    ("osversion", "OSVersion"),
    ("include", "Include"),
    ("library", "Library"),
    ("registry", "Registry"),
    ("namespace", "Namespace"),
    ("stage", "Stage"),
    ("product", "Product"),
    ("user", "User"),
    ("regcode", "Regcode"),
    ("productpgp", "ProductPGP"),
    ("registerurl", "RegisterURL"),
    ("modules", "Modules"),
    ("otherurl", "OtherURL"),
    ("fingerprints", "Fingerprints"),
    ("confurl", "ConfURL"),
    ("setopt", "Setopt"),
    ("target", "Target"),
    ("frontend", "Frontend"),
    ("filename", "Filename"),
    ("buildargs", "BuildArgs"),
];

/// Keys every stage may carry whatever its agent.
const COMMON_KEYS: [&str; 3] = ["bootstrap", "stage", "includecmd"];

/// Splits `otherurl12` into (`otherurl`, `12`); other keys have no number.
fn split_number(key: &str) -> (&str, &str) {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    (base, &key[base.len()..])
}

/// The rendered spelling of a lower-case key, or None when the reference would refuse it.
pub fn canonical_key(key: &str) -> Option<String> {
    let (base, number) = split_number(key);
    let (_, spelling) = KEYS.iter().find(|(k, _)| *k == base)?;
    // Only `otherurl` is numbered, and only numbered.
    if (base == "otherurl") == number.is_empty() {
        return None;
    }
    Some(format!("{spelling}{number}"))
}

/// One `key: value` of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    /// Lower case, as the reference stores it.
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A stage's header: its bootstrap agent and every entry in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub agent: Agent,
    pub entries: Vec<HeaderEntry>,
}

impl Header {
    /// The value of `key` (any case); the last one wins when a key is repeated.
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    pub fn from(&self) -> Option<&str> {
        self.get("from")
    }

    /// `OtherURL<n>` values in the order of their numbers, as zypper adds them.
    pub fn other_urls(&self) -> Vec<(u64, &str)> {
        let mut urls: Vec<(u64, &str)> = self
            .entries
            .iter()
            .filter_map(|e| {
                let (base, number) = split_number(&e.key);
                let n = number.parse().ok()?;
                (base == "otherurl").then_some((n, e.value.as_str()))
            })
            .collect();
        urls.sort_by_key(|(n, _)| *n);
        urls
    }
}

/// A key whose value is still being continued with `\`.
struct Pending {
    key: String,
    value: String,
    line: usize,
}

/// Parses the header lines of one stage. The first entry must be `Bootstrap` (the stage
/// splitter guarantees the first content line starts with it). Returns the header and
/// warnings for keys the agent does not read.
pub fn parse_header(file: &str, lines: &[Line]) -> Result<(Header, Vec<String>), DefError> {
    let err = |line: usize, kind| DefError {
        file: file.to_string(),
        line: Some(line),
        kind,
    };
    let mut entries: Vec<HeaderEntry> = Vec::new();
    let mut pending: Option<Pending> = None;
    for line in lines {
        let text = line.text.trim();
        if text.is_empty() || text.starts_with('#') {
            // A blank or comment line ends a continuation, as in the reference.
            if let Some(p) = pending.take() {
                entries.push(finish(file, p)?);
            }
            continue;
        }
        let text = text.split('#').next().unwrap_or_default();
        let (key, value, at) = match pending.take() {
            Some(p) => (p.key, p.value + text.trim(), p.line),
            None => {
                let (key, value) = text.split_once(':').ok_or_else(|| {
                    err(
                        line.no,
                        DefErrorKind::HeaderWithoutColon(text.trim().to_string()),
                    )
                })?;
                (key.trim().to_lowercase(), value.trim().to_string(), line.no)
            }
        };
        if let Some(cont) = value.strip_suffix('\\') {
            let value = match cont.strip_suffix("\\n") {
                Some(before) => format!("{before}\n"),
                None => cont.to_string(),
            };
            pending = Some(Pending {
                key,
                value,
                line: at,
            });
            continue;
        }
        entries.push(finish(
            file,
            Pending {
                key,
                value,
                line: at,
            },
        )?);
    }
    if let Some(p) = pending.take() {
        entries.push(finish(file, p)?);
    }
    let Some(first) = entries.first() else {
        // Only reachable for a stage that has no header at all, which the splitter prevents.
        return Err(DefError {
            file: file.to_string(),
            line: lines.first().map(|l| l.no),
            kind: DefErrorKind::MissingBootstrap(String::new()),
        });
    };
    if first.key != "bootstrap" {
        return Err(err(
            first.line,
            DefErrorKind::MissingBootstrap(first.key.clone()),
        ));
    }
    // A repeated (indented) `Bootstrap:` line overrides the first, like any repeated key.
    let last = entries
        .iter()
        .rev()
        .find(|e| e.key == "bootstrap")
        .unwrap_or(first);
    let bootstrap_line = last.line;
    let agent = Agent::from_name(&last.value)
        .ok_or_else(|| err(last.line, DefErrorKind::UnknownAgent(last.value.clone())))?;
    let header = Header { agent, entries };
    if agent.needs_from() && header.from().is_none_or(str::is_empty) {
        return Err(err(bootstrap_line, DefErrorKind::MissingFrom(agent.name())));
    }
    let warnings = unused_key_warnings(file, &header);
    Ok((header, warnings))
}

/// Checks the key of a finished entry and trims its value.
fn finish(file: &str, p: Pending) -> Result<HeaderEntry, DefError> {
    if canonical_key(&p.key).is_none() {
        return Err(DefError {
            file: file.to_string(),
            line: Some(p.line),
            kind: DefErrorKind::UnknownHeaderKey(p.key),
        });
    }
    Ok(HeaderEntry {
        key: p.key,
        value: p.value.trim().to_string(),
        line: p.line,
    })
}

/// Valid keys that this agent never reads: accepted, as the reference does, but worth a word.
fn unused_key_warnings(file: &str, header: &Header) -> Vec<String> {
    header
        .entries
        .iter()
        .filter(|e| {
            let (base, _) = split_number(&e.key);
            !COMMON_KEYS.contains(&base) && !header.agent.keys().contains(&base)
        })
        .map(|e| {
            format!(
                "{file}:{}: header {:?} is not used by bootstrap agent {:?}",
                e.line,
                canonical_key(&e.key).unwrap_or_else(|| e.key.clone()),
                header.agent.name()
            )
        })
        .collect()
}
