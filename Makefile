# Build, install and test. See README.md for the two set-up commands.
#
#   make                      release binaries in target/release
#   make install PREFIX=/usr/local
#   make install-suid         also the setuid-root starter (admin opt-in)
#   make demo                 everything for the main job, then pull and run as a plain user
#   make test                 every test (CI=true turns missing prerequisites into failures)

PREFIX ?= /usr/local
TEST_PREFIX ?= /opt/apptainer-test
CARGO ?= cargo
# `make install CARGO_PROFILE=dev` installs unoptimised binaries: quicker while developing.
CARGO_PROFILE ?= release
TARGET_DIR = target/$(if $(filter dev,$(CARGO_PROFILE)),debug,$(CARGO_PROFILE))
INSTALL ?= install

BINDIR = $(DESTDIR)$(PREFIX)/bin
LIBEXECDIR = $(DESTDIR)$(PREFIX)/libexec/apptainer/bin
SYSCONFDIR = $(DESTDIR)$(PREFIX)/etc/apptainer

# The starter's configuration path is fixed at build time from the prefix.
export APPTAINER_PREFIX := $(PREFIX)

.PHONY: all build install install-suid install-alt-starter deps demo test unit-test e2e-test bench clean

all: build

build:
	$(CARGO) build --profile $(CARGO_PROFILE) --locked --bins

install: build
	$(INSTALL) -d -m 0755 $(BINDIR) $(LIBEXECDIR) $(SYSCONFDIR)
	$(INSTALL) -m 0755 $(TARGET_DIR)/apptainer $(BINDIR)/apptainer
	$(INSTALL) -m 0755 $(TARGET_DIR)/starter $(LIBEXECDIR)/starter
	$(INSTALL) -m 0755 -o root -g root $(TARGET_DIR)/apptainer-squashfuse $(LIBEXECDIR)/apptainer-squashfuse
	$(INSTALL) -m 0644 -o root -g root etc/apptainer.conf $(SYSCONFDIR)/apptainer.conf
	$(INSTALL) -m 0644 -o root -g root etc/nvliblist.conf $(SYSCONFDIR)/nvliblist.conf
	$(INSTALL) -m 0644 -o root -g root etc/rocmliblist.conf $(SYSCONFDIR)/rocmliblist.conf

install-suid: install
	$(INSTALL) -m 4755 -o root -g root $(TARGET_DIR)/starter $(LIBEXECDIR)/starter-suid

# A second pair of starters (and the squashfuse server they run) whose built-in
# apptainer.conf lives under ALT_PREFIX, so the security tests can try admin settings
# (limit container *, allow setuid-mount, a tampered conf) without touching the main
# install. Only these two crates are built, in their own target dir.
ALT_PREFIX ?= /opt/apptainer-alt
ALT_TARGET = target/alt
install-alt-starter:
	APPTAINER_PREFIX=$(ALT_PREFIX) CARGO_TARGET_DIR=$(ALT_TARGET) $(CARGO) build --profile $(CARGO_PROFILE) --locked -p starter -p squashfuse --bins
	$(INSTALL) -d -m 0755 $(ALT_PREFIX)/libexec/apptainer/bin $(ALT_PREFIX)/etc/apptainer
	$(INSTALL) -m 0755 -o root -g root $(ALT_TARGET)/$(notdir $(TARGET_DIR))/apptainer-squashfuse $(ALT_PREFIX)/libexec/apptainer/bin/apptainer-squashfuse
	$(INSTALL) -m 0755 $(ALT_TARGET)/$(notdir $(TARGET_DIR))/starter $(ALT_PREFIX)/libexec/apptainer/bin/starter
	$(INSTALL) -m 4755 -o root -g root $(ALT_TARGET)/$(notdir $(TARGET_DIR))/starter $(ALT_PREFIX)/libexec/apptainer/bin/starter-suid
	$(INSTALL) -m 0644 -o root -g root etc/apptainer.conf $(ALT_PREFIX)/etc/apptainer/apptainer.conf

deps:
	scripts/install-deps.sh

demo: deps
	$(MAKE) install-suid
	scripts/demo.sh $(PREFIX)

test: deps
	$(MAKE) PREFIX=$(TEST_PREFIX) install-suid
	$(MAKE) install-alt-starter
	scripts/test-setup.sh $(TEST_PREFIX)
	# Licences, banned crates and sources of the dependency graph (see deny.toml). The advisory
	# check needs the RustSec database from GitHub, which this network cannot reach.
	$(CARGO) deny --offline check bans licenses sources
	APPTAINER_PREFIX=$(TEST_PREFIX) APPTAINER_TEST_PREFIX=$(TEST_PREFIX) APPTAINER_TEST_ALT_PREFIX=$(ALT_PREFIX) $(CARGO) test --workspace --locked --no-fail-fast

# Benchmarks against the peers (as root, after `make test` set up the registry and users);
# release binaries in BENCH_PREFIX, results in docs/benchmarks.md.
BENCH_PREFIX ?= /opt/apptainer-bench
bench:
	$(MAKE) PREFIX=$(BENCH_PREFIX) install-suid
	bench/run.sh $(BENCH_PREFIX)

clean:
	$(CARGO) clean
