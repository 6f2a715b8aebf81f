# litevault -- plain Makefile.  Override CC, CFLAGS, PREFIX, DESTDIR as usual.
CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
PKGS    := fuse3 libsystemd sqlite3 libzstd libarchive yaml-0.1 libcurl libmicrohttpd jansson libxml-2.0 libxxhash
OPT     ?= -O2 -g
CFLAGS  ?= $(OPT)
WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-format-truncation
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ASSERTS ?= 1
ALL_CFLAGS = -DLV_ASSERTS=$(ASSERTS) -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread $(WARN) -Isrc -I. $(PKG_CFLAGS) $(CFLAGS)
LDLIBS  += $(PKG_LIBS) -lhttp_parser -pthread -lm

BUILD   ?= build
BIN     ?= litevault
# Sources are found recursively: src/<layer>/*.c, archive/*.c, restore/*.c
# (docs/DESIGN.md shows the layers).  Header dependencies are generated
# (-MMD -MP into the .d files beside the objects), so an object is rebuilt
# only when a header it includes changes.
SRCDIRS := $(shell find src archive restore -type d)
SRCS    := $(sort $(foreach d,$(SRCDIRS),$(wildcard $(d)/*.c)))
LIBSRCS := $(filter-out src/cli/main.c,$(SRCS))
OBJS    := $(SRCS:%.c=$(BUILD)/%.o)
LIBOBJS := $(LIBSRCS:%.c=$(BUILD)/%.o)
TESTSRCS:= $(wildcard tests/unit_*.c)
ITSRCS  := $(wildcard tests/it_*.c)
# The test library: every module of tests/lib/ (see tests/lib/lvtest.h).
TESTLIB := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/lib/*.c))

.PHONY: all release man check-layers cli-docs-test deps npm-deps promtool-deps test unit-test it-test sqlite-tcl-test run bench asan fuzz fuzz-smoke install clean

all: $(BUILD)/.deps-ok $(BIN)

# Install only what is missing (Debian 12).  Other targets depend on this stamp.
# openssl: the tests make throwaway TLS certificates with it.
# iproute2 and nftables: network namespaces and partitions (tests/lib/netns.h).
# haproxy: tests/it_haproxy.c runs examples/haproxy.cfg.
# libhttp-parser-dev: the built-in HTTP proxy (src/daemon/proxy.c) parses HTTP/1.1 with it.
DEBPKGS := build-essential libfuse3-dev fuse3 libsqlite3-dev sqlite3 libzstd-dev libarchive-dev \
           libyaml-dev libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libxml2-dev \
           libcriterion-dev pkg-config libxxhash-dev python3 tcl-dev help2man libsystemd-dev \
           openssl iproute2 nftables haproxy etcd-server libhttp-parser-dev
# Test-only tools from npm (s3rver for the S3 store tests, pinned in
# tests/package-lock.json): node/npm and curl from apt only if missing, then
# `npm ci` only if tests/node_modules is missing.
NPM_DEPS = { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || ./tests/install-deps.sh nodejs npm; } && \
           { command -v curl >/dev/null 2>&1 || ./tests/install-deps.sh curl; } && \
           { [ -x tests/node_modules/.bin/s3rver ] || (cd tests && npm ci --no-audit --no-fund); }
deps:
	@./tests/install-deps.sh $(DEBPKGS)
	@$(NPM_DEPS)
# The stamp follows this Makefile too, so a package added to DEBPKGS is installed.
$(BUILD)/.deps-ok: tests/install-deps.sh Makefile
	@./tests/install-deps.sh $(DEBPKGS)
	@mkdir -p $(BUILD) && touch $@

# Only the tests and the bench need the S3 test server (make run does not).
npm-deps: $(BUILD)/.deps-ok
	@$(NPM_DEPS)

$(BIN): $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<


$(BUILD)/tests/unit: $(TESTSRCS:%.c=$(BUILD)/%.o) $(LIBOBJS) $(TESTLIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcriterion

$(BUILD)/tests/it: $(ITSRCS:%.c=$(BUILD)/%.o) $(LIBOBJS) $(TESTLIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcriterion

$(BUILD)/bench: bench/bench.c $(LIBOBJS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench_repl: bench/bench_repl.c | $(BUILD)/.deps-ok
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench_proxy: bench/bench_proxy.c | $(BUILD)/.deps-ok
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

JOBS ?= 2
unit-test: npm-deps $(BIN) $(BUILD)/tests/unit
	LITEVAULT=$(abspath $(BIN)) ./tests/run-criterion.sh $(BUILD)/unit.log $(BUILD)/tests/unit --jobs $(JOBS)

# The whole suite runs with -wal files and rollback journals on kernel
# passthrough (the default where the kernel has it); the capture, crash,
# fault, image and replay tests run again with them going through the
# daemon (LV_WAL_PASSTHROUGH=0 LV_JOURNAL_PASSTHROUGH=0), the other path
# to the same capture.
FALLBACK_TESTS ?= @(capture|crash|image|replay|export)/*
FALLBACK_FAULTS ?= faults/@(full_disk|full_log_disk|enospc)*
FALLBACK_ENV = LV_WAL_PASSTHROUGH=0 LV_JOURNAL_PASSTHROUGH=0
it-test: npm-deps $(BIN) $(BUILD)/tests/it
	LITEVAULT=$(abspath $(BIN)) ./tests/run-criterion.sh $(BUILD)/it.log $(BUILD)/tests/it --jobs $(JOBS)
	$(FALLBACK_ENV) LITEVAULT=$(abspath $(BIN)) ./tests/run-criterion.sh $(BUILD)/it-fallback.log \
	    $(BUILD)/tests/it --jobs $(JOBS) --filter '$(FALLBACK_TESTS)'
	$(FALLBACK_ENV) LITEVAULT=$(abspath $(BIN)) ./tests/run-criterion.sh $(BUILD)/it-fallback-faults.log \
	    $(BUILD)/tests/it --jobs $(JOBS) --filter '$(FALLBACK_FAULTS)'

# The man page and bash completion follow --help; make install puts every file in place.
cli-docs-test: $(BIN)
	LITEVAULT=$(abspath $(BIN)) ./tests/cli-docs.sh $(BUILD)
	./tests/install-check.sh

sqlite-tcl-test: $(BIN)
	LITEVAULT=$(abspath $(BIN)) ./tests/sqlite-tcl.sh

# Include rules of docs/DESIGN.md: includes name their folder, point down
# the layers, and form no cycle.
check-layers:
	python3 tests/check-layers.py

# promtool (Debian's prometheus package, about 100 MB installed, so only
# for the tests) checks /metrics in it_ops.c; without it that test is
# skipped with a notice.
promtool-deps:
	@command -v promtool >/dev/null 2>&1 || ./tests/install-deps.sh prometheus || \
	    echo "notice: promtool is not installed (apt-get install prometheus); /metrics will not be checked with it"

test: all check-layers cli-docs-test unit-test fuzz-smoke promtool-deps it-test sqlite-tcl-test

run: all
	./$(BIN) mount -c config.yml.sample

# Release builds (ASSERTS=0: LV_ASSERT compiled out) live in build-release/:
# the bench measures what users install.
REL_MAKE = $(MAKE) BUILD=build-release BIN=build-release/litevault ASSERTS=0
release:
	$(REL_MAKE) all

# BENCH_PARTS: the programs to run, any of main (bench.c), repl
# (bench_repl.c) and proxy (bench_proxy.c); default: all three.
BENCH_PARTS ?= main repl proxy
bench: npm-deps
	$(REL_MAKE) all build-release/bench build-release/bench_repl build-release/bench_proxy
	@case " $(BENCH_PARTS) " in *" main "*) LITEVAULT=$(abspath build-release/litevault) build-release/bench;; esac
	@case " $(BENCH_PARTS) " in *" repl "*) LITEVAULT=$(abspath build-release/litevault) build-release/bench_repl;; esac
	@case " $(BENCH_PARTS) " in *" proxy "*) LITEVAULT=$(abspath build-release/litevault) build-release/bench_proxy;; esac

# ASan+UBSan build in build-asan/: unit tests with leak detection, then the
# integration tests against the sanitized daemon build-asan/litevault (both
# run even if the first fails).  CFLAGS is set on the command line so a
# CFLAGS in the environment cannot drop the sanitizers.
# Sanitizer reports go to build-asan/reports/ (log_path), are printed at the
# end, and any report fails the target.  This is needed because Criterion
# does not fail a test whose worker process reports a leak at exit, and the
# integration tests capture the daemon's and the CLI's stderr.
# Criterion's own runner leaks a few blocks (allocated under
# criterion_run_all_tests, not in a test); lsan.supp suppresses exactly that,
# which needs full unwinding (fast_unwind_on_malloc=0; libcriterion has no
# frame pointers).
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/litevault CFLAGS="$(ASAN_FLAGS)" \
	    LDFLAGS="-fsanitize=address,undefined" litevault-asan-test

ASAN_REPORTS = $(abspath $(BUILD))/reports
ASAN_UBSAN   = UBSAN_OPTIONS=print_stacktrace=1:log_path=$(ASAN_REPORTS)/ubsan
litevault-asan-test: all npm-deps $(BUILD)/tests/unit $(BUILD)/tests/it
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@printf 'leak:criterion_run_all_tests\n' > $(BUILD)/lsan.supp
	@rc=0; \
	echo "$(BUILD)/tests/unit --jobs $(JOBS)   (with leak detection)"; \
	ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:log_path=$(ASAN_REPORTS)/asan \
	    LSAN_OPTIONS=suppressions=$(abspath $(BUILD))/lsan.supp $(ASAN_UBSAN) \
	    LITEVAULT=$(abspath $(BIN)) $(BUILD)/tests/unit --jobs $(JOBS) || rc=1; \
	echo "LITEVAULT=$(abspath $(BIN)) $(BUILD)/tests/it --jobs 1"; \
	ASAN_OPTIONS=detect_leaks=0:log_path=$(ASAN_REPORTS)/asan $(ASAN_UBSAN) \
	    LITEVAULT=$(abspath $(BIN)) $(BUILD)/tests/it --jobs 1 || rc=1; \
	for f in $$(grep -l -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' $(ASAN_REPORTS)/* 2>/dev/null); do \
	    echo "=== sanitizer report $$f"; cat "$$f"; rc=1; done; \
	if [ $$rc -ne 0 ]; then echo "asan: FAILED (test failures or sanitizer reports above)"; exit 1; fi; \
	echo "asan: unit and integration tests passed, no sanitizer reports"

# libFuzzer harnesses (fuzz/fuzz_NAME.c), one per parser, built with clang in
# $(FUZZ_BUILD)/ and each run for FUZZ_SECS seconds by fuzz/run.sh; any
# crash, leak or timeout fails the target and its reproducer path is printed.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECS    ?= 20
FUZZ_NAMES   := config txlog txlog_open wal state time cron manifest stream etcd proxy
# The parsers and decoders the harnesses reach, with what they link: the
# base and log layers whole (so splitting a file there needs no edit here).
FUZZ_LIBSRCS := $(wildcard src/base/*.c src/log/*.c) src/daemon/config.c src/daemon/proxy_http.c src/export/cron.c \
                archive/manifest.c archive/current.c restore/plan.c src/replica/stream.c src/replica/etcd_value.c
FUZZ_LIBOBJS := $(FUZZ_LIBSRCS:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_CFLAGS   = -DLV_ASSERTS=1 -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread $(filter-out -Wno-format-truncation,$(WARN)) -Isrc -I. $(PKG_CFLAGS) -g -O1 \
                -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: $(FUZZ_BINS) $(FUZZ_BUILD)/seeds/.ok
	./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECS) $(FUZZ_NAMES)

# make test runs a short pass (FUZZ_SMOKE_SECS) of the harnesses of the
# decoders that read bytes from the network (FUZZ_SMOKE_NAMES: the
# replication stream, the etcd lease's values, the proxy's HTTP heads),
# through make fuzz; skipped with a notice when $(FUZZ_CC) is not installed
# (make fuzz installs it).
FUZZ_SMOKE_NAMES ?= stream etcd proxy
FUZZ_SMOKE_SECS  ?= 5
fuzz-smoke:
	@if command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory FUZZ_NAMES="$(FUZZ_SMOKE_NAMES)" FUZZ_SECS=$(FUZZ_SMOKE_SECS) fuzz; \
	else \
	    echo "notice: $(FUZZ_CC) is not installed; the fuzz smoke pass ($(FUZZ_SMOKE_NAMES)) is skipped (make fuzz installs it)"; \
	fi

$(FUZZ_BUILD)/.deps-ok: tests/install-deps.sh
	@./tests/install-deps.sh $(DEBPKGS) clang libclang-rt-dev
	@mkdir -p $(FUZZ_BUILD) && touch $@

$(FUZZ_BUILD)/%.o: %.c | $(FUZZ_BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(FUZZ_LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBOBJS) $(PKG_LIBS) -lhttp_parser -pthread -lm

$(FUZZ_BUILD)/gen_seeds: fuzz/gen_seeds.c $(FUZZ_LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -o $@ $< $(FUZZ_LIBOBJS) $(PKG_LIBS) -lhttp_parser -pthread -lm

$(FUZZ_BUILD)/seeds/.ok: $(FUZZ_BUILD)/gen_seeds
	rm -rf $(FUZZ_BUILD)/seeds
	$(FUZZ_BUILD)/gen_seeds $(FUZZ_BUILD)/seeds
	@touch $@

# litevault(1), generated by help2man from the binary's --help texts.
man: $(BUILD)/litevault.1
$(BUILD)/litevault.1: $(BIN) docs/gen-man.sh
	./docs/gen-man.sh ./$(BIN) $@

# DESTDIR and PREFIX as usual.  The unit's ExecStart follows PREFIX.
install: release
	$(MAKE) BUILD=build-release BIN=build-release/litevault build-release/litevault.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/litevault $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0755 build-release/litevault $(DESTDIR)$(PREFIX)/bin/litevault
	install -m 0644 README.md config.yml.sample docs/*.md examples/litevault.yml $(DESTDIR)$(PREFIX)/share/doc/litevault/
	install -m 0644 build-release/litevault.1 $(DESTDIR)$(PREFIX)/share/man/man1/litevault.1
	install -m 0644 docs/litevault.bash-completion $(DESTDIR)$(PREFIX)/share/bash-completion/completions/litevault
	sed 's|/usr/bin/litevault|$(PREFIX)/bin/litevault|' examples/litevault.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/litevault.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/litevault.service

clean:
	rm -rf build build-asan build-fuzz build-release litevault

# Generated header dependencies (see SRCS).
-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' -type f -not -path '*/sqlite-tcl/*' 2>/dev/null)
