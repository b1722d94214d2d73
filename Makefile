# Thin wrapper over CMake and the scripts in tools/. `make run` and `make test` are the two
# commands a newcomer needs; both install what is missing first (tools/install-deps.sh).

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc)
CLANG_FORMAT ?= clang-format-14
C_SOURCES = $(shell git ls-files -co --exclude-standard -- '*.c' '*.h' 2>/dev/null)

export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0

.PHONY: all deps build run test unit asan format format-check lint tidy bench bench-scale fuzz test-faults soak clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD_DIR) -j$(JOBS)

run: build
	@tools/run-local.sh $(BUILD_DIR)

unit: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

# Everything: format and lint checks, cmocka (CTest), then the local stack with pgTAP and the
# integration suites (tools/run-tests.sh stops the stack also when a test fails).
test: build format-check lint
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)
	@tools/run-tests.sh $(BUILD_DIR)

# The same tests on an ASan+UBSan build made with clang.
asan: deps
	@CC=clang cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address,undefined >/dev/null
	@cmake --build $(ASAN_DIR) -j$(JOBS)
	@cd $(ASAN_DIR) && ctest --output-on-failure -j$(JOBS)
	@tools/run-tests.sh $(ASAN_DIR)

format:
	@$(CLANG_FORMAT) -i $(C_SOURCES)

format-check: deps
	@$(CLANG_FORMAT) --dry-run --Werror $(C_SOURCES)
	@echo "format-check: ok ($(words $(C_SOURCES)) files)"

lint: deps
	@tools/lint.sh

# clang-tidy (clang-analyzer-*, bugprone-*) is advisory for now: it reports, never fails.
tidy: build
	@tools/tidy.sh $(BUILD_DIR) || true

# Service benchmarks into docs/performance.md (about 25 minutes on 2 cores: the last 10 are
# writes sustained with a relay draining; BENCH_SUSTAINED_SECONDS shortens them).
bench: build
	@tools/bench.sh $(BUILD_DIR)

# The same runs at 1k, 100k and 1M users (long: loads ~18M rows).
bench-scale: build
	@tools/bench.sh $(BUILD_DIR) --scale

fuzz: deps
	@tools/fuzz.sh $${FUZZ_SECONDS:-30}

test-faults: build
	@tools/test-faults.sh $(BUILD_DIR)

# Kafka away for SOAK_OUTAGE seconds (default an hour) while writes go on; not part of CI.
soak: build
	@tools/soak.sh $(BUILD_DIR)

clean:
	@rm -rf $(BUILD_DIR) $(ASAN_DIR)
