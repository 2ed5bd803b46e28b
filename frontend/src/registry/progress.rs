//! Download progress bars: drawn only on a terminal at INFO level or above
//! (`crate::log::progress_enabled()`), hidden otherwise, so logs and `-q` stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count bar for a transfer of `total` bytes, labelled `label`; hidden when bars
/// are disabled or `total` is `None`.
pub fn bytes_bar(total: Option<u64>, label: &str) -> ProgressBar {
    let Some(total) = total.filter(|_| crate::log::progress_enabled()) else {
        return ProgressBar::hidden();
    };
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{prefix} {bytes:>10} / {total_bytes:<10} [{bar:40}] {percent:>3} % {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}
