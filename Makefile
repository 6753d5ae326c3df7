# The two commands a newcomer types: `make demo` (main job end to end) and `make check` (every
# test). Both install their own dependencies first (Debian 12 packages; needs root or sudo).
BUILD ?= build
ASAN_BUILD ?= build-asan
PYTEST ?= /usr/bin/python3 -m pytest
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages, one group per kind of target (tools/install-deps.sh holds the lists); each
# target installs the groups it uses, so a fresh Debian 12 machine needs nothing beforehand.
DEPS := tools/install-deps.sh

.PHONY: all deps build check check-unit check-iotests check-soak check-asan check-tsan check-fuzz check-guest check-zonefs docs demo clean

all: build

deps:
	@$(DEPS) build

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

check-unit: build
	meson test -C $(BUILD) --print-errorlogs

check-iotests: build
	@$(DEPS) iotests
	cd tests/iotests && QZNS_BUILD=$(abspath $(BUILD)) $(PYTEST) -q

# The soak of tests/iotests/test_soak.py (bench/nvmf-load against one daemon while QMP removes
# exports and faults zones) for SOAK_SECONDS instead of the 60 s it gets in check-iotests, then
# check-sigkill.
SOAK_SECONDS ?= 600
check-soak: build check-sigkill
	@$(DEPS) iotests
	cd tests/iotests && QZNS_BUILD=$(abspath $(BUILD)) QZNS_SOAK_SECONDS=$(SOAK_SECONDS) $(PYTEST) -q -s test_soak.py

# qzns-storage-daemon SIGKILLed SIGKILL_KILLS times under a Linux guest writing over NVMe/TCP
# (tests/guest/test-qzns-sigkill.sh; check-guest runs it with 30 kills).
SIGKILL_KILLS ?= 100
.PHONY: check-sigkill
check-sigkill: build
	@$(DEPS) guest
	tests/guest/build-guest.sh
	bash tests/guest/test-qzns-sigkill.sh --build $(BUILD) --kills $(SIGKILL_KILLS)

$(ASAN_BUILD)/build.ninja:
	CXX=clang++ meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized

check-asan: deps
	@$(DEPS) sanitize iotests
	$(MAKE) $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C $(ASAN_BUILD) --print-errorlogs \
		--timeout-multiplier 3
	cd tests/iotests && QZNS_BUILD=$(abspath $(ASAN_BUILD)) \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 $(PYTEST) -q

# ThreadSanitizer build of the multi-threaded tests: the unit tests that run threads, the qtest
# NVMe tests and the transport tests (NVMe/TCP, vfio-user). The three long single-threaded
# suites (qcow2 engine, crash, power cut) add ~6 min under TSan and cannot race, so they run in
# the plain and ASan builds only.
TSAN_BUILD ?= build-tsan
TSAN_SKIP := qcow2_engine qcow2_crash zoned_powercut
$(TSAN_BUILD)/build.ninja:
	CXX=clang++ meson setup $(TSAN_BUILD) -Db_sanitize=thread -Db_lundef=false \
		-Dbuildtype=debugoptimized -Dman=disabled

check-tsan: deps
	@$(DEPS) sanitize
	$(MAKE) $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 meson test -C $(TSAN_BUILD) --print-errorlogs \
		--timeout-multiplier 4 $$(meson test -C $(TSAN_BUILD) --no-rebuild --list 2>/dev/null | \
		sed 's/.* \/ //' | grep -vxF $(foreach t,$(TSAN_SKIP),-e $(t)))

docs:
	@$(DEPS) docs
	sphinx-build -W -q -b html docs $(BUILD)/docs

# Real Linux 6.1 guests (tests/guest): qzns over NVMe/TCP must keep zones, data and a zoned
# btrfs across a daemon restart; the guest and the QEMU 11 chroot are built once and cached.
GUEST_TESTS ?= $(sort $(wildcard tests/guest/test-qzns-*.sh))
check-guest: build
	@$(DEPS) guest
	tests/guest/build-guest.sh
	for t in $(GUEST_TESTS); do echo "== $$t"; bash $$t --build $(BUILD) || exit 1; done

# zonefs alone (check-guest runs it too): qzns's own zonefs checks over NVMe/TCP and vfio-user
check-zonefs: build
	@$(DEPS) guest
	tests/guest/build-guest.sh
	bash tests/guest/test-qzns-zonefs.sh --build $(BUILD)

# fio's own zoned-device suite (t/zbd, fio built from the newest source Debian serves) in real
# guests: every transport x geometry in PEER_FIO_RUNS, PEER_JOBS at a time; each test's log and
# a JSON result per run in PEER_RESULTS, the report in PEER_REPORT. Any FAIL fails the target.
PEER_RESULTS ?= /tmp/qzns-peer-results
PEER_REPORT ?= tests/guest/peer-suites.md
PEER_FIO_RUNS ?= tcp:full vfio-user:full tcp:smallcap vfio-user:smallcap
PEER_JOBS ?= 4
.PHONY: check-peer-fio
check-peer-fio: build
	@$(DEPS) guest peer peer-fio
	bash tests/guest/peer/check-fio-zbd.sh --build $(BUILD) --results $(PEER_RESULTS) \
	    --report $(PEER_REPORT) --jobs $(PEER_JOBS) $(PEER_FIO_RUNS)

# The community's own suites against qzns (tests/guest/peer-suites.md); CI runs them in `make check`.
.PHONY: check-peer
check-peer: check-peer-fio

check: check-unit check-iotests check-asan check-tsan check-fuzz docs check-install check-guest check-peer

demo: build
	@$(DEPS) iotests guest
	bash tools/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

# libFuzzer targets (tests/fuzz/): the block library built with clang, ASan, UBSan and coverage
# instrumentation in $(FUZZ_BUILD), each target linked against it with -fsanitize=fuzzer (meson
# 1.0's b_sanitize has no "fuzzer"). `make check-fuzz` runs each for FUZZ_TIME seconds over a
# fresh corpus seeded from the committed one (tests/fuzz/corpus/TARGET, crash regressions
# included) and the generated qcow2 images, with tests/fuzz/TARGET.dict when there is one, and
# fails on any crash, leak, hang or sanitizer report. NINJAFLAGS=-j1 on a shared machine.
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME ?= 20
NINJAFLAGS ?=
FUZZ_TARGETS := fuzz-qcow2-open fuzz-qcow2-ops fuzz-nvme-sqe fuzz-tcp-pdu fuzz-vfio-user fuzz-json fuzz-qmp
FUZZ_LIB := $(FUZZ_BUILD)/block/libqzns-block.a
# Every target links the whole stack; static libraries in dependency order.
FUZZ_LIBS := $(FUZZ_BUILD)/storage-daemon/libqzns-daemon.a $(FUZZ_BUILD)/hw/vfio-user/libqzns_vfio_user.a \
	$(FUZZ_BUILD)/nvmf/libqzns-nvmf.a $(FUZZ_BUILD)/hw/nvme/libqzns-nvme.a $(FUZZ_LIB)
FUZZ_CXX := clang++ -std=c++20 -O1 -g -I. -fsanitize=address,undefined -fno-sanitize-recover=all

$(FUZZ_BUILD)/build.ninja:
	CXX=clang++ meson setup $(FUZZ_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
		-Dcpp_args=-fsanitize=fuzzer-no-link -Dbuildtype=debugoptimized

fuzz: deps
	@$(DEPS) sanitize
	$(MAKE) $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) $(NINJAFLAGS) block/libqzns-block.a hw/nvme/libqzns-nvme.a nvmf/libqzns-nvmf.a \
		hw/vfio-user/libqzns_vfio_user.a storage-daemon/libqzns-daemon.a
	for t in $(FUZZ_TARGETS); do \
		$(FUZZ_CXX) -fsanitize=fuzzer tests/fuzz/$$t.cc $(FUZZ_LIBS) -lz -luring -pthread -o $(FUZZ_BUILD)/$$t || exit 1; \
	done
	$(FUZZ_CXX) -fsanitize=fuzzer-no-link tests/fuzz/gen-corpus.cc $(FUZZ_LIB) -lz -luring -pthread \
		-o $(FUZZ_BUILD)/gen-corpus
	rm -rf $(FUZZ_BUILD)/seeds && for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_BUILD)/seeds/$$t; done
	$(FUZZ_BUILD)/gen-corpus $(FUZZ_BUILD)/seeds/fuzz-qcow2-open $(FUZZ_BUILD)/seeds/fuzz-qcow2-ops
	for t in $(FUZZ_TARGETS); do \
		test -d tests/fuzz/corpus/$$t || { echo "tests/fuzz/corpus/$$t: no committed seeds"; exit 1; }; \
		cp tests/fuzz/corpus/$$t/* $(FUZZ_BUILD)/seeds/$$t/; \
	done

check-fuzz: fuzz
	for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_BUILD)/corpus/$$t && mkdir -p $(FUZZ_BUILD)/corpus/$$t && \
		cp $(FUZZ_BUILD)/seeds/$$t/* $(FUZZ_BUILD)/corpus/$$t/ && \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_TIME) -timeout=20 -rss_limit_mb=4096 -max_len=1048576 \
			$$(test -f tests/fuzz/$$t.dict && echo -dict=tests/fuzz/$$t.dict) \
			-artifact_prefix=$(FUZZ_BUILD)/$$t- $(FUZZ_BUILD)/corpus/$$t 2>$(FUZZ_BUILD)/$$t.log || \
			{ tail -60 $(FUZZ_BUILD)/$$t.log; echo "$$t failed; reproducer in $(FUZZ_BUILD)/$$t-*"; exit 1; }; \
		tail -1 $(FUZZ_BUILD)/$$t.log; \
	done

# The long runs issue 15 records (tests/fuzz/long-runs.md): `make fuzz-long FUZZ_LONG=fuzz-qmp`
# runs one target for FUZZ_RUNS executions in a single libFuzzer process, over a corpus kept in
# $(FUZZ_BUILD)/long/TARGET across runs (seeded like check-fuzz the first time), and prints the
# final statistics to put in long-runs.md. FUZZ_LONG_FLAGS adds libFuzzer flags (-entropic=0
# makes the QMP target about 1.5x faster per input).
FUZZ_RUNS ?= 10000000
FUZZ_LONG ?= fuzz-qcow2-open
FUZZ_LONG_FLAGS ?=
.PHONY: fuzz-long
fuzz-long: fuzz
	mkdir -p $(FUZZ_BUILD)/long/$(FUZZ_LONG)
	test -n "$$(ls -A $(FUZZ_BUILD)/long/$(FUZZ_LONG))" || cp $(FUZZ_BUILD)/seeds/$(FUZZ_LONG)/* $(FUZZ_BUILD)/long/$(FUZZ_LONG)/
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(FUZZ_BUILD)/$(FUZZ_LONG) -runs=$(FUZZ_RUNS) -timeout=20 -rss_limit_mb=4096 -max_len=1048576 \
		-print_final_stats=1 $(FUZZ_LONG_FLAGS) $$(test -f tests/fuzz/$(FUZZ_LONG).dict && echo -dict=tests/fuzz/$(FUZZ_LONG).dict) \
		-artifact_prefix=$(FUZZ_BUILD)/long/$(FUZZ_LONG)- $(FUZZ_BUILD)/long/$(FUZZ_LONG) \
		2>$(FUZZ_BUILD)/long/$(FUZZ_LONG).log || { tail -60 $(FUZZ_BUILD)/long/$(FUZZ_LONG).log; exit 1; }
	grep '^stat::' $(FUZZ_BUILD)/long/$(FUZZ_LONG).log

# `make bench` (bench/README.md): every comparison with qzns's peers in one run — fio on a raw
# file, Debian's qemu-img bench, QEMU 7.2's built-in ZNS in the test guest, persistence on/off,
# scale to 1M zones. Prints a table of ratios and writes bench/results/latest.{md,json,png}.
BENCH_SCALE := $(BUILD)/bench/qzns-bench-scale

# The NVMe/TCP data path from the host (bench/nvmf-load) against fio io_uring on the same file.
.PHONY: bench-nvmf
bench-nvmf: build
	@$(DEPS) bench
	/usr/bin/python3 bench/nvmf_load.py --build $(BUILD) --size-mb 512

# The same from a vfio-user host (bench/vfio-user-load: QEMU's and the guest driver's side,
# shadow doorbells on as Linux uses them), with issue 12's targets said met or not.
.PHONY: bench-vfio-user
bench-vfio-user: build
	@$(DEPS) bench
	/usr/bin/python3 bench/nvmf_load.py --build $(BUILD) --size-mb 512 --transport vfio-user

.PHONY: bench
bench: deps $(BUILD)/build.ninja
	@$(DEPS) bench
	ninja -C $(BUILD) tools/qzns-img tools/qzns-io storage-daemon/qzns-storage-daemon block/libqzns-block.a
	mkdir -p $(BUILD)/bench
	$(CXX) -std=c++20 -O2 -I. bench/scale.cc $(BUILD)/block/libqzns-block.a -lz -luring -pthread -o $(BENCH_SCALE)
	$(SUDO) python3 bench/run.py --build $(BUILD)

# `make install [PREFIX=/usr/local] [DESTDIR=/staging]` installs like a packaged tool:
# PREFIX/bin/qzns-img, PREFIX/bin/qzns-io, PREFIX/sbin/qzns-storage-daemon, the man pages
# qzns-img(1), qzns-io(1), qzns-storage-daemon(8) (built with sphinx-build, required here), the
# systemd unit template PREFIX/lib/systemd/system/qzns-storage-daemon@.service and an example
# configuration in PREFIX/share/doc/qzns/examples/. meson fixes the prefix at configure time, so
# this sets it on $(BUILD) (`meson configure -Dprefix=`; only the unit and example config are
# regenerated). DESTDIR stages the files under a root directory, as a package build does.
# `make check-install` installs into a temporary DESTDIR and checks the result, up to running
# the daemon the way the unit does (tests/install/test-install.sh).
PREFIX ?= /usr/local
.PHONY: install check-install
install: deps $(BUILD)/build.ninja
	@$(DEPS) docs
	meson configure $(BUILD) -Dprefix=$(PREFIX) -Dman=enabled
	ninja -C $(BUILD)
	meson install -C $(BUILD) --no-rebuild $(if $(DESTDIR),--destdir $(abspath $(DESTDIR)))

check-install: deps $(BUILD)/build.ninja
	@$(DEPS) install
	meson configure $(BUILD) -Dman=enabled
	ninja -C $(BUILD)
	bash tests/install/test-install.sh $(BUILD)
