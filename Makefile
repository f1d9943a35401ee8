# The two commands of the README: `make test` and `make bench`. Each installs what is missing
# (torch 2.13.0 only when no torch is importable: a bare `torch` would pull GBs of CUDA
# packages), builds tricks_ext._C in place (CUDA sources too when nvcc is found), then runs.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# module:package pairs installed when the module does not import
DEPS := triton:triton ninja:ninja pybind11:pybind11 pytest:pytest pytest_timeout:pytest-timeout xdist:pytest-xdist numpy:numpy matplotlib:matplotlib \
	setuptools:setuptools wheel:wheel yaml:pyyaml safetensors:safetensors huggingface_hub:huggingface_hub tqdm:tqdm \
	sklearn:scikit-learn scipy:scipy packaging:packaging
# The peers the tests and benchmarks compare against, installed without their dependencies:
# each would otherwise ask for a torch (and timm for torchvision), which pulls a CUDA build.
PEERS := timm:timm==1.0.29 pytorch_optimizer:pytorch-optimizer==4.1.0 torch_lr_finder:torch-lr-finder==0.2.2 \
	statopt:statopt==0.2 sklearn_compat:sklearn-compat==0.1.6 imblearn:imbalanced-learn==0.14.2
PYTEST_ARGS ?= -q -ra
# One pytest worker per core (pytest-xdist; each keeps one torch thread, tests/conftest.py): most
# of the suite is the Triton interpreter and the simt emulator, one core each. On 2 cores the
# suite took 950 s in one process (854 s of CPU, beside other jobs), 416 s in two.
XDIST ?= -n auto --dist worksteal
BENCH_ARGS ?=

N ?= 1000
SEED ?= 1

SANITIZE_DIR := build/sanitize
# What runs under the sanitizers: the C++ kernels' tests and the fuzz suite (the Triton
# parametrizations run Python only, the CUDA ones need a device, test_build checks the regular
# build: CUDA kernels present, the package without _C; test_compile_check and test_gpu_model run GPU
# compilers); the simt tests (the emulated CUDA kernels) are `make test-asan`'s. test_distributed
# spawns gloo processes that launch the kernels the optimizer tests already run here, at smaller
# sizes. The README checks, SASA/SALSA against statopt (thousands of steps; SASA's kernel runs here
# in tests/test_sasa_step.py), the samplers and the
# digits examples run no kernel that the op tests do not run here already: left out, the stage
# took 1011 s of its 1200 s limit with them (make test-sanitize of 3441eef). test_hang_report runs
# no kernel (pytest-timeout on a test that sleeps).
SANITIZE_TESTS ?= tests --ignore=tests/test_build.py --ignore=tests/test_compile_check.py --ignore=tests/test_gpu_model.py \
	--ignore=tests/test_distributed.py --ignore=tests/test_readme_api.py --ignore=tests/test_readme_counts.py \
	--ignore=tests/test_readme_table.py --ignore=tests/test_optim_sasa.py --ignore=tests/test_optim_salsa.py \
	--ignore=tests/test_recipe_imbalance.py --ignore=tests/test_digits_examples.py \
	--ignore=tests/test_hang_report.py -k "not triton and not simt"
# Without the gradchecks and the optimizer's long runs: they launch the kernels the other simt
# tests launch, at the same sizes, and took 850 of 1832 s under ASan.
ASAN_TESTS ?= tests --ignore=tests/test_build.py --ignore=tests/test_compile_check.py \
	-k "simt and not gradcheck and not state_dict_resume and not ranger_matches_reference"
# The sanitized _C (ASan + UBSan; the simt backend included when the CUDA headers are found),
# loaded through TRICKS_EXT_LIB into a Python that preloads the sanitizer runtimes. Reports go
# to files, printed when the run fails: a worker that aborts takes its stderr with it, and CI
# once showed only "node down: Not properly terminated" for a crash it could not say more of.
SANITIZE_REPORT := $(SANITIZE_DIR)/report
SANITIZED = TRICKS_EXT_LIB="$$(ls $(SANITIZE_DIR)/lib/tricks_ext/_C*.so)" \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$(SANITIZE_REPORT) \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(SANITIZE_REPORT)
# Runs a sanitized command: old reports removed first, any report printed when it fails.
define sanitized_run
	rm -f $(SANITIZE_REPORT).*
	rc=0; $(SANITIZED) $(1) || rc=$$?; \
	if [ $$rc -ne 0 ]; then for f in $(SANITIZE_REPORT).*; do [ -e "$$f" ] && echo "== $$f" && cat "$$f"; done; fi; \
	exit $$rc
endef

.PHONY: deps build sanitize-build test test-sanitize test-asan mutate mutate-python bench fuzz info compile-check gpu-model clean

deps:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	@missing=""; for d in $(DEPS); do \
	  $(PYTHON) -c "import $${d%%:*}" 2>/dev/null || missing="$$missing $${d#*:}"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(PIP) install $$missing; fi
	@missing=""; for d in $(PEERS); do \
	  $(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$${d%%:*}') is None)" \
	    || missing="$$missing $${d#*:}"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing without dependencies:$$missing"; $(PIP) install --no-deps $$missing; fi

# _C is compiled in place by ninja under build/, so a second `make` recompiles only the sources
# (or headers) that changed; the editable install, once, only maps the package names
# (tricks_ext.triton_kernels -> triton_kernels/).
build: deps
	$(PYTHON) setup.py -q build_ext --inplace
	@$(PYTHON) -c "import tricks_ext.triton_kernels, sys; sys.exit(not tricks_ext.__file__.startswith('$(CURDIR)/'))" \
	  2>/dev/null || TRICKS_EXT_SKIP_EXT=1 $(PIP) install --no-build-isolation --no-deps -e .

test: build
	$(PYTHON) -m pytest tests $(XDIST) $(PYTEST_ARGS)

# A longer fuzz run than `make test`'s (60 cases per op from seed 0): N cases per op from SEED.
fuzz: build
	TRICKS_FUZZ_CASES=$(N) TRICKS_FUZZ_SEED=$(SEED) $(PYTHON) -m pytest tests/fuzz $(PYTEST_ARGS)

# The CPU kernels built apart with -fsanitize=address,undefined (the in-place _C stays as it
# is), loaded through TRICKS_EXT_LIB into a Python that preloads the sanitizer runtimes. Any
# report fails the run: UBSan does not recover, ASan aborts on its first error. Leak checks
# are off: CPython and torch keep allocations for the life of the process.
sanitize-build: build
	TRICKS_EXT_SANITIZE=1 TRICKS_EXT_CUDA=0 $(PYTHON) setup.py -q build_ext --build-temp $(SANITIZE_DIR)/temp \
	  --build-lib $(SANITIZE_DIR)/lib

test-sanitize: sanitize-build
	$(call sanitized_run,$(PYTHON) -m pytest $(SANITIZE_TESTS) $(XDIST) $(PYTEST_ARGS))

# The simt tests under AddressSanitizer: out-of-bounds reads and writes of the emulated CUDA
# kernels on global memory (the tensors) and on dynamic shared memory (heap-allocated per block);
# static __shared__ arrays are not covered (GCC leaves variables in a named section unguarded).
# One thread order per call (the race check is `make test`'s).
test-asan: sanitize-build
	$(call sanitized_run,TRICKS_EXT_SIMT_ORDERS=forward $(PYTHON) -m pytest $(ASAN_TESTS) $(XDIST) $(PYTEST_ARGS))

# Plausible kernel bugs applied one at a time to a scratch copy; every one must fail its op's
# tests (scripts/mutate.py --list). mutate-python: the Python/Triton mutants only (no rebuild).
mutate: build
	$(PYTHON) scripts/mutate.py

mutate-python: build
	$(PYTHON) scripts/mutate.py --kind python

bench: build
	$(PYTHON) -m benchmarks.run $(BENCH_ARGS)

info: build
	$(PYTHON) -m tricks_ext info

# Every Triton specialization and CUDA kernel compiled for sm_80 and sm_90 (no GPU needed).
compile-check: build
	env -u TRITON_INTERPRET $(PYTHON) scripts/compile_check.py

# Predicted memory rates on H100/H200 of every CUDA kernel and Triton specialization (the aligned
# launches), from their sm_90 SASS and occupancy, and per benchmark case (no GPU needed; nvcc and
# the triton wheel's cuobjdump). It flags kernels below 85 % of the modelled H100 ceiling; the
# tests run `--quick --check` (float32 Triton specializations), which fails on one it does not explain.
gpu-model: deps
	env -u TRITON_INTERPRET $(PYTHON) scripts/gpu_model.py

clean:
	rm -rf build *.egg-info tricks_ext/_C*.so
