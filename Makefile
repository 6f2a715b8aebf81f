# litevault -- plain Makefile.  Override CC, CFLAGS, PREFIX, DESTDIR as usual.
CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
PKGS    := fuse3 sqlite3 libzstd libarchive yaml-0.1 libcurl libmicrohttpd jansson libxml-2.0 libxxhash
OPT     ?= -O2 -g
CFLAGS  ?= $(OPT)
WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-format-truncation
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread $(WARN) -Isrc $(PKG_CFLAGS) $(CFLAGS)
LDLIBS  += $(PKG_LIBS) -pthread -lm

BUILD   ?= build
BIN     ?= litevault
SRCS    := $(wildcard src/*.c)
LIBSRCS := $(filter-out src/main.c,$(SRCS))
OBJS    := $(SRCS:%.c=$(BUILD)/%.o)
LIBOBJS := $(LIBSRCS:%.c=$(BUILD)/%.o)
TESTSRCS:= $(wildcard tests/unit_*.c)
ITSRCS  := $(wildcard tests/it_*.c)
TESTLIB := $(BUILD)/tests/helpers.o

.PHONY: all deps test unit-test it-test sqlite-tcl-test run bench asan fuzz install clean

all: $(BUILD)/.deps-ok $(BIN)

# Install only what is missing (Debian 12).  Other targets depend on this stamp.
DEBPKGS := build-essential libfuse3-dev fuse3 libsqlite3-dev sqlite3 libzstd-dev libarchive-dev \
           libyaml-dev libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libxml2-dev \
           libcriterion-dev pkg-config libxxhash-dev python3 tcl-dev
deps:
	@./tests/install-deps.sh $(DEBPKGS)
$(BUILD)/.deps-ok: tests/install-deps.sh
	@./tests/install-deps.sh $(DEBPKGS)
	@mkdir -p $(BUILD) && touch $@

$(BIN): $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard src/*.h) tests/helpers.h | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit: $(TESTSRCS:%.c=$(BUILD)/%.o) $(LIBOBJS) $(TESTLIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcriterion

$(BUILD)/tests/it: $(ITSRCS:%.c=$(BUILD)/%.o) $(LIBOBJS) $(TESTLIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcriterion

$(BUILD)/bench: bench/bench.c $(LIBOBJS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

JOBS ?= 2
unit-test: $(BUILD)/tests/unit
	$(BUILD)/tests/unit --jobs $(JOBS)

it-test: $(BIN) $(BUILD)/tests/it
	LITEVAULT=$(abspath $(BIN)) $(BUILD)/tests/it --jobs $(JOBS)

sqlite-tcl-test: $(BIN)
	LITEVAULT=$(abspath $(BIN)) ./tests/sqlite-tcl.sh

test: all unit-test it-test sqlite-tcl-test

run: all
	./$(BIN) mount -c config.yml.sample

bench: all $(BUILD)/bench
	LITEVAULT=$(abspath $(BIN)) $(BUILD)/bench

asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/litevault OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" litevault-asan-test

litevault-asan-test: all $(BUILD)/tests/unit $(BUILD)/tests/it
	ASAN_OPTIONS=detect_leaks=1 $(BUILD)/tests/unit --jobs $(JOBS)
	ASAN_OPTIONS=detect_leaks=0 LITEVAULT=$(abspath $(BIN)) $(BUILD)/tests/it --jobs 1

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/litevault
	install -m 0755 litevault $(DESTDIR)$(PREFIX)/bin/litevault
	install -m 0644 README.md config.yml.sample docs/*.md $(DESTDIR)$(PREFIX)/share/doc/litevault/

clean:
	rm -rf build build-asan build-fuzz litevault
