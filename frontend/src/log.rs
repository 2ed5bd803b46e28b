//! Messages in Apptainer's style: `INFO:    `, `WARNING: `, `ERROR:   `, `FATAL:   `, on
//! stderr, filtered by the level that `-d/-v/-q/-s` (or `APPTAINER_MESSAGELEVEL`) chose.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Apptainer's message levels: a message shows when its level is at most the logger's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Fatal = -4,
    Error = -3,
    Warning = -2,
    Info = 1,
    Verbose = 4,
    Debug = 5,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL:   ",
            Level::Error => "ERROR:   ",
            Level::Warning => "WARNING: ",
            Level::Info => "INFO:    ",
            Level::Verbose => "VERBOSE: ",
            Level::Debug => "DEBUG:   ",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Level::Fatal | Level::Error => "\x1b[31m",
            Level::Warning => "\x1b[33m",
            Level::Info => "\x1b[34m",
            _ => "",
        }
    }
}

static LEVEL: AtomicI32 = AtomicI32::new(Level::Info as i32);
static COLOUR: AtomicBool = AtomicBool::new(true);

/// Sets the level from the numeric value Apptainer uses (`-q` = -1, `-s` = -3, `-v` = 4, `-d` = 5).
pub fn set_level(level: i32) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The numeric level in force, passed on to helpers as `APPTAINER_MESSAGELEVEL`.
pub fn level() -> i32 {
    LEVEL.load(Ordering::Relaxed)
}

pub fn set_colour(on: bool) {
    COLOUR.store(on, Ordering::Relaxed);
}

/// True when a message of this level would be printed.
pub fn enabled(level: Level) -> bool {
    (level as i32) <= LEVEL.load(Ordering::Relaxed)
}

/// True when progress bars may be drawn: stderr is a terminal and the level is at least INFO.
pub fn progress_enabled() -> bool {
    enabled(Level::Info) && std::io::stderr().is_terminal()
}

pub fn emit(level: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let colour = COLOUR.load(Ordering::Relaxed) && std::io::stderr().is_terminal();
    let line = format!("{}", msg);
    let result = if colour && !level.colour().is_empty() {
        writeln!(err, "{}{}\x1b[0m{}", level.colour(), level.prefix(), line)
    } else {
        writeln!(err, "{}{}", level.prefix(), line)
    };
    // Nowhere left to report a failed write to stderr.
    drop(result);
}

#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warning { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Warning, format_args!($($t)*)) } }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! verbose { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Verbose, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($t)*)) } }

/// Prints `FATAL:   msg` and exits 255, as Apptainer does.
pub fn fatal(msg: std::fmt::Arguments<'_>) -> ! {
    // A fatal error is always shown, even with --silent.
    let saved = level();
    set_level(saved.max(Level::Fatal as i32));
    emit(Level::Fatal, msg);
    std::process::exit(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hides_info_but_shows_warnings() {
        set_level(-1);
        assert!(!enabled(Level::Info));
        assert!(enabled(Level::Warning));
        assert!(enabled(Level::Error));
        set_level(-3);
        assert!(!enabled(Level::Warning));
        assert!(enabled(Level::Error));
        set_level(5);
        assert!(enabled(Level::Debug));
        set_level(1);
    }
}
