#!/bin/sh
# Installs the Debian 12 packages needed to build apptainer and to run every test
# (registry, image tools, FUSE, user-namespace helpers, benchmark tools). Idempotent and
# non-interactive; run as root. The Rust toolchain is not installed here: it comes with the
# machine (rust-toolchain.toml pins the version).
set -eu

PACKAGES="
build-essential pkg-config
squashfs-tools squashfs-tools-ng squashfuse fuse3 fuse-overlayfs fuse2fs
uidmap bubblewrap e2fsprogs util-linux procps psmisc debootstrap
skopeo umoci docker-registry docker.io busybox-static apache2-utils
jq openssl ca-certificates curl gzip zstd xz-utils tar
hyperfine
"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root (it installs Debian packages)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# No service may start while packages are installed: the test setup starts its own registry.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps.sh: installing:$missing"
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
else
    echo "install-deps.sh: all packages already installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        echo "install-deps.sh: cargo is in ${CARGO_HOME:-$HOME/.cargo}/bin but not on PATH: add it to PATH" >&2
    else
        echo "install-deps.sh: cargo not found: install the Rust toolchain pinned in rust-toolchain.toml (e.g. with rustup) and put cargo on PATH" >&2
    fi
    exit 1
fi

# cargo-deny (not packaged in Debian 12) checks the dependency graph in `make test`. Built
# once from crates.io (several minutes), then reused.
if ! cargo deny --version >/dev/null 2>&1; then
    echo "install-deps.sh: building cargo-deny from crates.io (once)"
    cargo install --locked cargo-deny
fi
