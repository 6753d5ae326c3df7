# The two commands a newcomer types: `make demo` (main job end to end) and `make check` (every
# test). Both install their own dependencies first (Debian 12 packages; needs root or sudo).
BUILD ?= build
ASAN_BUILD ?= build-asan
PYTEST ?= /usr/bin/python3 -m pytest
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := meson ninja-build g++ clang pkg-config zlib1g-dev libgtest-dev qemu-utils \
	python3-pytest python3-sphinx

.PHONY: all deps build check check-unit check-iotests check-asan check-fuzz docs demo clean

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing: $$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

check-unit: build
	meson test -C $(BUILD) --print-errorlogs

check-iotests: build
	cd tests/iotests && QZNS_BUILD=$(abspath $(BUILD)) $(PYTEST) -q

$(ASAN_BUILD)/build.ninja:
	CXX=clang++ meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug

check-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C $(ASAN_BUILD) --print-errorlogs
	cd tests/iotests && QZNS_BUILD=$(abspath $(ASAN_BUILD)) \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 $(PYTEST) -q

docs: deps
	sphinx-build -W -q -b html docs $(BUILD)/docs

check: check-unit check-iotests check-asan docs

demo: build
	bash tools/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
