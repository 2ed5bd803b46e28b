//! Harness for the end-to-end tests: where the installed binaries are, how to run them as
//! the unprivileged test user, and `require!` (skip on a laptop, fail in CI).
