# Set-up and entry points. Each target creates .venv when it is missing and
# installs the project with the extras it needs, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

# Real Chainer 7.8.1 for the drop-in tests (tests/chainer): it needs NumPy < 2, so it lives in
# an environment of its own beside .venv, with the project installed into it as well.
CHAINER_VENV := .venv-chainer
CPY          := $(CHAINER_VENV)/bin/python
CPIP         := $(CPY) -m pip --disable-pip-version-check -q

.PHONY: run test bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The gpu extra (CuPy, NVRTC, cuda_fp16.h) lets the tests compile every GPU kernel without a GPU.
# torch is an optional peer for the migration tests (tests/conformance/test_migration.py:
# torch.optim gated against Chainer's specification), installed as the bench target installs
# it; those tests skip where it cannot be had (22 s to install here, about 16 s of CPU to test).
$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install -e '.[test,plot,gpu]'
	-$(PIP) install 'torch==2.13.0'
	touch $@

# Chainer's sdist builds only with an old setuptools and without build isolation; mpi4py and
# the mpich wheel are for ChainerMN under mpiexec. The project itself is installed editable
# with its test extra (NumPy held below 2 by the constraint).
$(CHAINER_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CHAINER_VENV)
	$(CPIP) install --upgrade pip
	$(CPIP) install 'setuptools<70' wheel 'numpy<2'
	$(CPIP) install --no-build-isolation 'chainer==7.8.1'
	echo 'numpy<2' > $(CHAINER_VENV)/constraints.txt
	$(CPIP) install -c $(CHAINER_VENV)/constraints.txt -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PIP) install -e '.[test,bench]'
	# torch is an optional peer for the benchmarks only; the CPU build of 2.13.0 is
	# installed when it can be had, and the peer benchmarks skip otherwise.
	-$(PIP) install 'torch==2.13.0'
	touch $@

# The main job: the reference's self-check (float64 against mpmath), then the conformance
# suite on `fast` (the ci level, one worker per usable core, every case required to run),
# once; the reports are written from that run's saved results, whatever the verdict. The
# target's exit status is the suite's (0 conforms, 1 does not, 2 error).
RESULTS := reports/conformance-last-run.json
run: $(VENV)/.installed-test
	$(PY) -m reference.selfcheck
	rm -f $(RESULTS)
	status=0; $(PY) -m conformance run --impl fast --level ci --require-all --json $(RESULTS) \
	    || status=$$?; \
	$(PY) -m conformance report --results $(RESULTS) --require-all && exit $$status

# pytest exits 5 when it collects nothing; that is a failure here, as any non-zero exit is.
# Two workers (pytest-xdist), one per core of the 2-core CI machine; --dist loadscope keeps a
# module's tests in one worker, so a module-scoped fixture (the ci suite, an mpiexec launch)
# runs once. Measured from a fresh clone (`CI=true bash .ci/run`, the package caches warm) on
# the 2-core Intel Xeon VM at b534309: 3 min 40 s in all; pytest 1 min 55 s in .venv (2,002
# passed, 184 skipped) and 14 s in .venv-chainer (439 passed). On the slower 2-core AMD EPYC VM
# used before: 6 min 45 s in all.
# tests/chainer needs real Chainer (NumPy < 2): it runs second, in .venv-chainer.
test: $(VENV)/.installed-test $(CHAINER_VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadscope tests --ignore=tests/chainer
	$(CPY) -m pytest -q -n 2 --dist loadscope tests/chainer

bench: $(VENV)/.installed-bench
	$(PY) -m pytest -q benchmarks

# Everything that needs a GPU, in one command (.ci/gpu_check.py): the GPU build, the GPU
# tests, the conformance suite and the kernel mutants on the GPU, the quick GPU benchmarks.
# It runs with the interpreter that has CuPy, NVRTC, pytest-benchmark and torch (on the lent
# H100/H200 machines, the image's python3, which reaches no package index); reports/ gets
# conformance-gpu, mutants-gpu, benchmarks/<gpu> and gpu-check. GPU_CHECK_ARGS=--dry-run runs
# what can run without a GPU.
GPU_PYTHON ?= $(PYTHON)
gpu-check:
	$(GPU_PYTHON) .ci/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks fast/_build
