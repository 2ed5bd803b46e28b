//! `apptainer instance list`: the caller's live instances, as the reference prints them (a
//! tab-aligned table, `--logs`, or `--json`). Entries whose process is gone, or whose pid now
//! belongs to something else, are stale: they are removed, as the reference does.

use super::state::{process_is_instance, titled, InstanceFile, Places};
use anyhow::{bail, Result};
use serde::Serialize;

/// Output style of `instance list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Logs,
    Json,
}

/// The live instances whose names match `pattern`; stale entries are dropped on the way.
pub fn live(places: &Places, pattern: &str) -> Result<Vec<InstanceFile>> {
    let mut found = Vec::new();
    for name in places.names(pattern)? {
        match places.read(&name) {
            Ok(f) if process_is_instance(f.pid, places.uid, &places.user, &f.name) => found.push(f),
            // Still starting or stopping (the starter lives on): not listed, not removed.
            Ok(f) if titled(f.ppid, &places.user, &f.name) => {}
            Ok(_) => places.remove(&name),
            Err(e) => crate::warning!("ignoring instance {name:?}: {e:#}"),
        }
    }
    Ok(found)
}

/// Prints the instances matching `pattern` in `format`.
pub fn print(places: &Places, pattern: &str, format: Format) -> Result<()> {
    let list = live(places, pattern)?;
    let text = match format {
        Format::Json => json(&list)?,
        Format::Table => {
            let mut rows = vec![row(["INSTANCE NAME", "PID", "IP", "IMAGE"])];
            rows.extend(
                list.iter()
                    .map(|i| row([&i.name, &i.pid.to_string(), &i.ip, &i.image])),
            );
            tabulate(&rows)
        }
        Format::Logs => {
            let mut rows = vec![row(["INSTANCE NAME", "PID", "LOGS"])];
            for i in &list {
                rows.push(row([&i.name, &i.pid.to_string(), &i.log_err_path]));
                rows.push(row(["", "", &i.log_out_path]));
            }
            tabulate(&rows)
        }
    };
    print!("{text}");
    Ok(())
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Aligns columns as Go's `tabwriter` with padding 4 and spaces: every cell but the last of
/// a line is padded to its column's widest cell plus four.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c).filter(|_| c + 1 < r.len()))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                out.push_str(&format!("{cell:<w$}", w = widths[c] + 4));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    instance: &'a str,
    pid: i32,
    img: &'a str,
    ip: &'a str,
    #[serde(rename = "logErrPath")]
    log_err_path: &'a str,
    #[serde(rename = "logOutPath")]
    log_out_path: &'a str,
}

/// `{"instances": [...]}` indented with tabs, as the reference's encoder writes it.
fn json(list: &[InstanceFile]) -> Result<String> {
    let entries: Vec<JsonEntry<'_>> = list
        .iter()
        .map(|i| JsonEntry {
            instance: &i.name,
            pid: i.pid,
            img: &i.image,
            ip: &i.ip,
            log_err_path: &i.log_err_path,
            log_out_path: &i.log_out_path,
        })
        .collect();
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(
        &std::collections::BTreeMap::from([("instances", entries)]),
        &mut ser,
    )?;
    buf.push(b'\n');
    Ok(String::from_utf8(buf)?)
}

/// The places of `user` (root only, as in the reference), else the caller's own.
pub fn places_for(user: Option<&str>, me: &str, uid: u32) -> Result<Places> {
    match user {
        Some(other) if other != me => {
            if uid != 0 {
                bail!("only root user can list user's instances");
            }
            let acct = nix::unistd::User::from_name(other)?
                .ok_or_else(|| anyhow::anyhow!("user {other:?} not found"))?;
            let host = super::state::hostname()?;
            Ok(Places::under(
                &acct.dir.join(".apptainer/instances"),
                &host,
                other,
                acct.uid.as_raw(),
            ))
        }
        _ => Places::current(me, uid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_like_tabwriter() {
        let rows = vec![
            row(["INSTANCE NAME", "PID", "IP", "IMAGE"]),
            row(["web", "12345", "", "/x.sif"]),
        ];
        assert_eq!(
            tabulate(&rows),
            "INSTANCE NAME    PID      IP    IMAGE\nweb              12345          /x.sif\n"
        );
    }

    #[test]
    fn json_uses_the_references_keys_and_tabs() {
        let text = json(&[]).unwrap();
        assert_eq!(text, "{\n\t\"instances\": []\n}\n");
    }
}
