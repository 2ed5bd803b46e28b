//! `apptainer instance stats NAME`: CPU, memory, block I/O and process count of an instance.
//! The reference reads them from the instance's cgroup and refuses ("stats are only
//! available if cgroups are enabled") when the instance has none. Instances here are never
//! put in a cgroup of their own (rootless users usually cannot create one), so the numbers
//! come from /proc instead: the instance's init and every process below it, summed. A
//! process that forked away from the tree (double fork to the host's init, or a process
//! joined with `exec instance://`) is not counted; the limit is the host's memory.

use super::list::{live, tabulate};
use super::state::Places;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One sample of the instance's processes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// User + system CPU time, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory, bytes.
    pub rss: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub pids: usize,
}

/// Prints the stats of instance `name`: one line after a second with `no_stream`, else a
/// refreshed table every second until interrupted. `json` implies one sample.
pub fn stats(places: &Places, name: &str, json: bool, no_stream: bool) -> Result<()> {
    let list = live(places, name)?;
    let Some(inst) = list.first() else {
        bail!("no instance found");
    };
    if list.len() != 1 {
        bail!("query returned more than one instance ({})", list.len());
    }
    if json && !no_stream {
        crate::warning!("JSON output is only available for a single timepoint (--no-stream)");
    }
    if !json {
        crate::info!(
            "Stats for {} instance of {} (PID={})",
            inst.name,
            inst.image,
            inst.pid
        );
    }
    let limit = mem_total();
    let (mut prev, mut at) = (sample(inst.pid), Instant::now());
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = sample(inst.pid);
        let elapsed = at.elapsed().as_nanos().max(1) as f64;
        let cpu = now.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / elapsed * 100.0;
        if json {
            println!("{}", to_json(&now, limit)?);
            return Ok(());
        }
        if !no_stream {
            print!("\x1b[2J\x1b[1;1H");
        }
        let rows = [
            [
                "INSTANCE NAME",
                "CPU USAGE",
                "MEM USAGE / LIMIT",
                "MEM %",
                "BLOCK I/O",
                "PIDS",
            ]
            .map(String::from)
            .to_vec(),
            vec![
                inst.name.clone(),
                format!("{cpu:.2}%"),
                format!("{} / {}", bytes_size(now.rss), bytes_size(limit)),
                format!("{:.2}%", now.rss as f64 / limit.max(1) as f64 * 100.0),
                format!(
                    "{} / {}",
                    bytes_size(now.read_bytes),
                    bytes_size(now.write_bytes)
                ),
                now.pids.to_string(),
            ],
        ];
        print!("{}", tabulate(&rows));
        if no_stream {
            return Ok(());
        }
        (prev, at) = (now, Instant::now());
    }
}

/// The same keys as the reference's cgroup statistics, for what /proc gives.
fn to_json(s: &Sample, limit: u64) -> Result<String> {
    let v = serde_json::json!({
        "cpu_stats": { "cpu_usage": { "total_usage": s.cpu_ns } },
        "memory_stats": { "usage": { "usage": s.rss, "limit": limit } },
        "pids_stats": { "current": s.pids },
        "blkio_stats": { "io_service_bytes_recursive": [
            { "op": "Read", "value": s.read_bytes },
            { "op": "Write", "value": s.write_bytes }
        ] }
    });
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    serde::Serialize::serialize(
        &v,
        &mut serde_json::Serializer::with_formatter(&mut buf, fmt),
    )?;
    Ok(String::from_utf8(buf)?)
}

/// Sums the counters of `root` and its descendants. Fields a process does not let us read
/// (its `io` needs ptrace access) count as zero.
pub fn sample(root: i32) -> Sample {
    let tick_ns = 1_000_000_000
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100)
            .max(1) as u64;
    let mut s = Sample::default();
    for pid in tree(root) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14 and stime 15.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, r)| r.split_whitespace().collect());
        let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        s.cpu_ns += (ticks(11) + ticks(12)) * tick_ns;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.rss += kib_field(&status, "VmRSS:") * 1024;
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        s.read_bytes += plain_field(&io, "read_bytes:");
        s.write_bytes += plain_field(&io, "write_bytes:");
        s.pids += 1;
    }
    s
}

/// `root` and every process below it, from the ppid of each process in /proc.
fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        out.extend(children.get(&out[i]).into_iter().flatten());
        i += 1;
    }
    out
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn plain_field(text: &str, key: &str) -> u64 {
    kib_field(text, key)
}

fn mem_total() -> u64 {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        "MemTotal:",
    ) * 1024
}

/// Sizes as the reference prints them (docker's `units.BytesSize`: binary units, four
/// significant digits): `0B`, `2KiB`, `1.465MiB`.
pub fn bytes_size(n: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_four_significant_digits() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(2048), "2KiB");
        assert_eq!(bytes_size(1_536_000), "1.465MiB");
        assert_eq!(bytes_size(1023), "1023B");
    }

    #[test]
    fn this_process_is_sampled_with_memory_and_one_pid() {
        let s = sample(std::process::id() as i32);
        assert!(s.pids >= 1 && s.rss > 0, "{s:?}");
    }
}
