//! Download progress bars: drawn only on a terminal at INFO level or above
//! (`crate::log::progress_enabled()`), hidden otherwise, so logs and `-q` stay clean.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A group for bars of parallel downloads; draws nothing when bars are disabled.
pub fn multi() -> MultiProgress {
    if crate::log::progress_enabled() {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    }
}

/// A byte-count bar for a transfer of `total` bytes, labelled `label`, in `group`; hidden
/// without a group or when bars are disabled.
pub fn bytes_bar(group: Option<&MultiProgress>, total: u64, label: &str) -> ProgressBar {
    let Some(group) = group.filter(|_| crate::log::progress_enabled()) else {
        return ProgressBar::hidden();
    };
    let bar = group.add(ProgressBar::new(total));
    let style = ProgressStyle::with_template(
        "{prefix} {bytes:>10} / {total_bytes:<10} [{wide_bar}] {percent:>3} %",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}
