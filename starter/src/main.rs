//! The privileged starter. See docs/starter-sequence.md.
fn main() {
    std::process::exit(1);
}
