//! `apptainer cache list [-T type] [-v]` and `apptainer cache clean [-f] [-n] [-D days]
//! [-T type]`, with Apptainer's output.

use super::GlobalOpts;
use crate::cache::listing::{self, Entry};
use crate::cache::Cache;
use crate::info;
use anyhow::{Context, Result};
use clap::{ArgAction, Subcommand};
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List your local apptainer cache
    List(ListArgs),
    /// Clean your local apptainer cache
    Clean(CleanArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// a list of cache types to display, possible entries: library, oci, shub, blob(s), all
    #[arg(short = 'T', long = "type", value_delimiter = ',')]
    pub types: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct CleanArgs {
    /// suppress any prompts and clean the cache
    #[arg(short = 'f', long, action = ArgAction::SetTrue)]
    pub force: bool,
    /// operate in dry run mode and remove nothing
    #[arg(short = 'n', long = "dry-run", action = ArgAction::SetTrue)]
    pub dry_run: bool,
    /// remove all cache entries older than specified number of days
    #[arg(short = 'D', long)]
    pub days: Option<u64>,
    /// a list of cache types to clean, possible entries: library, oci, shub, blob(s), all
    #[arg(short = 'T', long = "type", value_delimiter = ',')]
    pub types: Vec<String>,
}

pub fn run(args: Args, g: &GlobalOpts) -> Result<()> {
    match args.command {
        // `-v` here is Apptainer's `cache list -v`; clap parses it as the global flag.
        CacheCommand::List(a) => list(&a, g.verbose || g.debug),
        CacheCommand::Clean(a) => clean(&a),
    }
}

fn list(args: &ListArgs, verbose: bool) -> Result<()> {
    let root = Cache::existing_root()?;
    let kinds = listing::parse_types(&args.types)?;
    let mut out = std::io::stdout().lock();
    let (mut containers, mut container_bytes, mut blobs, mut blob_bytes) = (0, 0, 0, 0);
    let mut rows = Vec::new();
    for kind in kinds {
        for e in listing::entries(&root, kind)? {
            if e.kind == "blob" {
                blobs += 1;
                blob_bytes += e.size;
            } else if !crate::cache::INTERNAL_KINDS.contains(&e.kind) {
                containers += 1;
                container_bytes += e.size;
            }
            rows.push(e);
        }
    }
    if verbose {
        writeln!(
            out,
            "{:<24} {:<22} {:<16} TYPE",
            "NAME", "DATE CREATED", "SIZE"
        )?;
        for e in &rows {
            let name: String = e.name.chars().take(22).collect();
            writeln!(
                out,
                "{:<24} {:<22} {:<16} {}",
                name,
                listing::format_time(e.modified),
                listing::human_size(e.size),
                e.type_label()
            )?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "There are {containers} container file(s) using {} and {blobs} oci blob file(s) using {} of space",
        listing::human_size(container_bytes),
        listing::human_size(blob_bytes)
    )?;
    writeln!(
        out,
        "Total space used: {}",
        listing::human_size(container_bytes + blob_bytes)
    )?;
    Ok(())
}

fn clean(args: &CleanArgs) -> Result<()> {
    let root = Cache::existing_root()?;
    let kinds = listing::parse_types(&args.types)?;
    if !args.force && !args.dry_run && !confirm(args)? {
        info!("Cache cleanup canceled");
        return Ok(());
    }
    let cutoff = args
        .days
        .map(|d| SystemTime::now() - Duration::from_secs(d * 24 * 3600));
    for kind in kinds {
        let entries: Vec<Entry> = listing::entries(&root, kind)?
            .into_iter()
            .filter(|e| cutoff.is_none_or(|c| e.modified < c))
            .collect();
        if entries.is_empty() {
            let dir = listing::kind_dir(&root, kind);
            info!("No cached files to remove at {}", dir.display());
            continue;
        }
        for e in &entries {
            if args.dry_run {
                info!("Would remove {} cache entry: {}", kind, e.name);
            } else {
                if listing::remove(&root, e)? {
                    info!("Removing {} cache entry: {}", kind, e.name);
                } else {
                    crate::warning!("{} cache entry {} is in use by a pull: kept", kind, e.name);
                }
            }
        }
    }
    Ok(())
}

/// Asks before deleting, as Apptainer does; anything but y/yes cancels.
fn confirm(args: &CleanArgs) -> Result<bool> {
    let what = if args.types.is_empty() || args.types.iter().any(|t| t == "all") {
        "everything in your cache (containers from all sources and OCI blobs)".to_string()
    } else {
        format!("your {} cache entries", args.types.join(", "))
    };
    let scope = match args.days {
        Some(d) => format!(" older than {d} day(s)"),
        None => String::new(),
    };
    println!("This will delete {what}{scope}.");
    println!("Hint: You can see exactly what would be deleted by canceling and using the --dry-run option.");
    print!("Do you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
