# medembed build. `make` builds build/libmedembed.so, build/libmedembed.a and
# build/medembed; `make test` runs every suite; `make help` lists the rest.
#
# Sources are found by folder (src/*/*.c, tools/cli/*.c, tests/unit/test_*.c),
# so adding a file needs no edit here. Files named *_avx2.c / *_avx512.c /
# *_amx.c (x86-64) and *_neon.c / *_dotprod.c / *_mmla.c (ARM64) get their ISA flags and
# are built only when the compiler targets their architecture (`$(CC)
# -dumpmachine`, not the host: `make CC=aarch64-linux-gnu-gcc` cross-builds);
# nothing else is built with -m flags, and the choice of kernel happens at run
# time (src/kernels/dispatch.c).

CC      ?= cc
BUILD   ?= build
SAN     ?=
# The tests' Python: the tool environment of scripts/venv.sh when it exists (the peers:
# sentence-transformers, tokenizers, onnxruntime, openai), else Debian's python3.
VENV    ?= .venv
PY      ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,/usr/bin/python3)

# The compiler's target (x86_64-linux-gnu, aarch64-linux-gnu, ...): it decides
# which kernel files are built. A cross compiler reads the target's
# libraries through pkg-config's multiarch folder (Debian's :arm64 packages).
TARGET  := $(shell $(CC) -dumpmachine 2>/dev/null)
ARCH    := $(firstword $(subst -, ,$(TARGET)))
HOST_TARGET := $(shell cc -dumpmachine 2>/dev/null)
ifneq ($(TARGET),$(HOST_TARGET))
PKG_CONFIG ?= PKG_CONFIG_LIBDIR=/usr/lib/$(TARGET)/pkgconfig:/usr/share/pkgconfig pkg-config
else
PKG_CONFIG ?= pkg-config
endif
PKGS      := libutf8proc jansson sqlite3
CLI_PKGS  := libcurl libmicrohttpd
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null || echo -lutf8proc -ljansson -lsqlite3)
CLI_LIBS   := $(shell $(PKG_CONFIG) --libs $(CLI_PKGS) 2>/dev/null || echo -lcurl -lmicrohttpd)

WARN    := -Wall -Wextra -Wshadow -Wvla -Wformat=2 -Wno-format-truncation -Wno-unused-parameter
ifneq (,$(findstring clang,$(CC)))
WARN    += -Wno-unknown-warning-option
endif
OPT     ?= -O2
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -g $(OPT) -fPIC $(WARN) -Iinclude -Isrc $(PKG_CFLAGS) $(CFLAGS)
ifeq ($(WERROR),1)
CFLAGS_ALL += -Werror
endif
ifeq ($(SAN),asan)
CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
endif
ifeq ($(SAN),ubsan)
CFLAGS_ALL += -fsanitize=undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=undefined
endif
LDLIBS_ALL := $(PKG_LIBS) -lpthread -lm $(LDSAN)

ISA_AVX2   := -mavx2 -mfma -mf16c
ISA_AVX512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mfma -mf16c -mprfchw
ISA_AMX    := $(ISA_AVX512) -mamx-tile -mamx-bf16 -mamx-int8
# ARM64: Advanced SIMD (NEON) is part of the base architecture; the dot
# product files need FEAT_DotProd (Armv8.2-A's sdot/udot), checked at run time.
ISA_NEON    :=
ISA_DOTPROD := -march=armv8.2-a+dotprod
# and the matrix multiply files FEAT_I8MM (smmla) and FEAT_BF16 (bfmmla).
ISA_MMLA    := -march=armv8.2-a+dotprod+i8mm+bf16

# The per-ISA files of the other architectures are left out.
X86_SRC_PAT   := %_avx2.c %_avx512.c %_amx.c
ARM64_SRC_PAT := %_neon.c %_dotprod.c %_mmla.c
ifneq (,$(filter x86_64 i386 i486 i586 i686,$(ARCH)))
OTHER_ISA_PAT := $(ARM64_SRC_PAT)
else ifeq ($(ARCH),aarch64)
OTHER_ISA_PAT := $(X86_SRC_PAT)
else
OTHER_ISA_PAT := $(X86_SRC_PAT) $(ARM64_SRC_PAT)
endif

LIB_SRC  := $(filter-out $(OTHER_ISA_PAT),$(sort $(wildcard src/*.c src/*/*.c)))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(sort $(wildcard tools/cli/*.c tools/server/*.c))
# Library sources the CLI compiles into its own binary, as curl's tool borrows
# the curlx_ files: internal helpers only a tool needs (`pull`'s repo-id
# syntax and sha256 check) stay out of the public API yet exist once. The
# library builds them with -fvisibility=hidden, so the two copies never meet.
# Each must depend on libc (and the public header) only.
CLI_BORROWED := src/model/hubref.c src/util/sha256.c src/util/sha256_file.c
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o) $(CLI_BORROWED:%.c=$(BUILD)/obj/cli/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps venv run lib cli test unit golden-gen cli-test py-test fuzz-replay check asan ubsan fuzz fuzz-build \
        bench bench-tools clean help format-check test-arm64

all: lib cli

help:
	@echo "make            build build/libmedembed.so, build/libmedembed.a, build/medembed"
	@echo "make test       unit + golden + CLI + Python tests (skips ../shared tests visibly if absent)"
	@echo "make venv       the pinned Python tool environment (.venv/, requirements-dev.txt)"
	@echo "make golden-gen the generated golden models + float64 references (build/golden/)"
	@echo "make asan       the test suite under ASan+UBSan (build-asan/)"
	@echo "make ubsan      the test suite under UBSan alone (build-ubsan/)"
	@echo "make fuzz       build the libFuzzer targets (clang) and run each briefly"
	@echo "make test-arm64 ARM64 cross build (build-arm64/) + unit and golden tests under qemu-aarch64"
	@echo "make bench      run bench/ scripts (not part of the tests)"
	@echo "make bench-tools build/gemm_bench, build/attn_bench (one GEMM / attention alone)"

deps:
	@bash scripts/deps.sh

# the pinned Python tool environment (requirements-dev.txt) in $(VENV)/
venv:
	@MEDEMBED_VENV=$(abspath $(VENV)) bash scripts/venv.sh

# The main job: embed the sentence from the MedEmbed model card and print the
# start of its vector. MODEL may be a folder or a Hugging Face repo id.
MODEL ?= abhinand/MedEmbed-base-v0.1
CARD_TEXT := William Henry Gates III (born October 28, 1955) is an American business magnate, software developer, investor, and philanthropist.
run: deps
	@$(MAKE) --no-print-directory all
	@$(BUILD)/medembed embed -m "$(MODEL)" --text "$(CARD_TEXT)" -o $(BUILD)/card.jsonl
	@echo "embedding of the model-card sentence ($(MODEL)), first values:"
	@cut -c1-160 $(BUILD)/card.jsonl

lib: $(BUILD)/libmedembed.so $(BUILD)/libmedembed.a
cli: $(BUILD)/medembed

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_AVX2) -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_AVX512) -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/%_amx.o: %_amx.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_AMX) -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/%_neon.o: %_neon.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_NEON) -fvisibility=hidden -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/%_dotprod.o: %_dotprod.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_DOTPROD) -fvisibility=hidden -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/%_mmla.o: %_mmla.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_MMLA) -fvisibility=hidden -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fvisibility=hidden -DMEDEMBED_BUILD -MMD -MP -c $< -o $@

$(BUILD)/obj/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# The server's OpenAPI document and /docs page are embedded by assets.c (.incbin).
SERVER_ASSETS := tools/server/openapi.json tools/server/docs.html
$(BUILD)/obj/tools/server/assets.o: $(SERVER_ASSETS)

$(BUILD)/obj/cli/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libmedembed.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmedembed.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libmedembed.so -o $@ $^ $(LDLIBS_ALL)

# The CLI links the shared library, so it can reach only the public API (and
# the CLI_BORROWED files it compiles in itself).
$(BUILD)/medembed: $(CLI_OBJ) $(BUILD)/libmedembed.so
	$(CC) -o $@ $(CLI_OBJ) -L$(BUILD) -lmedembed -Wl,-rpath,'$$ORIGIN' $(CLI_LIBS) $(LDLIBS_ALL)

# Unit tests link the static archive so they can test internals.
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmedembed.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(BUILD)/libmedembed.a -lcmocka $(LDLIBS_ALL)

# The route table against the OpenAPI document: the test compiles both in.
$(BUILD)/tests/test_server_routes: tools/server/routes.c tools/server/routes.h tools/server/assets.c \
    $(SERVER_ASSETS)

# The generated golden set: tiny random-weight models and their float64 NumPy
# references in $(BUILD)/golden, so the golden, determinism and level tests
# run from a fresh clone (../shared adds its larger cases when present).
# Without numpy (or $(PY)) it prints SKIP and writes nothing; the tests that
# need it then skip visibly.
GOLDEN_GEN := $(BUILD)/golden
GOLDEN_GEN_SRC := $(addprefix tests/py/,gen_golden.py gen_model.py numpy_ref.py wordpiece_ref.py)
$(GOLDEN_GEN)/.complete: $(GOLDEN_GEN_SRC)
	@if command -v $(firstword $(PY)) >/dev/null 2>&1; then \
	    $(PY) tests/py/gen_golden.py --out $(GOLDEN_GEN); \
	else echo "SKIP: $(PY) not found: generated golden models not written to $(GOLDEN_GEN)"; fi

golden-gen: $(GOLDEN_GEN)/.complete

unit: $(UNIT_BIN) golden-gen
	@bash tests/run_unit.sh $(BUILD) $(UNIT_BIN)

# Fuzz targets built with a replay main(): `make test` replays every seed
# corpus under this build (and so under ASan/UBSan in `make asan`).
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz-replay/%)
$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libmedembed.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< tests/fuzz/replay.c $(BUILD)/libmedembed.a $(LDLIBS_ALL)

fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for b in $(FUZZ_REPLAY); do n=$${b##*/fuzz_}; \
	    printf '%s: ' "$$b"; ./$$b tests/fuzz/corpus/$$n; done

$(BUILD)/examples/%: examples/%.c $(BUILD)/libmedembed.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< -L$(BUILD) -lmedembed -Wl,-rpath,'$$ORIGIN/..' $(LDSAN)

EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))

# bench/ tools that link the static library (built here so that they keep
# compiling; docs/PERFORMANCE.md says how each is used)
BENCH_TOOLS := $(BUILD)/gemm_bench $(BUILD)/attn_bench
$(BUILD)/gemm_bench $(BUILD)/attn_bench: $(BUILD)/%: bench/%.c bench/bench_util.h $(BUILD)/libmedembed.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libmedembed.a $(LDLIBS_ALL)

bench-tools: $(BENCH_TOOLS)

cli-test: all $(EXAMPLES) $(BENCH_TOOLS) golden-gen
	@bash tests/cli/run.sh $(BUILD)

py-test: all
	@bash tests/run_py.sh $(BUILD) $(PY)

test: deps venv
	@$(MAKE) --no-print-directory all
	@$(MAKE) -k --no-print-directory unit fuzz-replay cli-test py-test

check: test

# ARM64 on any Debian machine (docs/ARM64.md): the cross build with Debian's
# aarch64-linux-gnu-gcc and :arm64 libraries, then the unit and golden tests
# under qemu-aarch64, on a CPU with the optional extensions and on one without.
ARM64_CC    ?= aarch64-linux-gnu-gcc
ARM64_BUILD ?= build-arm64
test-arm64:
	@bash scripts/deps.sh --arm64
	@$(MAKE) --no-print-directory CC=$(ARM64_CC) BUILD=$(ARM64_BUILD) all \
	    $(UNIT_SRC:tests/unit/%.c=$(ARM64_BUILD)/tests/%) golden-gen
	@bash tests/run_arm64.sh $(ARM64_BUILD)

asan:
	$(MAKE) BUILD=build-asan SAN=asan OPT=-O1 test

ubsan:
	$(MAKE) BUILD=build-ubsan SAN=ubsan test

fuzz-build:
	@bash tests/fuzz/build.sh

fuzz: fuzz-build
	@bash tests/fuzz/run.sh $${FUZZ_SECONDS:-20}

bench: all
	@bash bench/run.sh

format-check:
	clang-format --dry-run --Werror $(LIB_SRC) $(CLI_SRC) include/medembed.h

clean:
	rm -rf build build-asan build-ubsan build-fuzz build-arm64

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
