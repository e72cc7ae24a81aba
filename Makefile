# The project's commands. `make run` and `make test` work on a fresh machine: they install what is
# missing first (system packages with apt-get, Python packages into .venv).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# System packages: a CJK font for the POS screens and receipts; SDL/GL runtime for Kivy offscreen;
# a virtual X display and real X input for the click test (tests/terminal/ui/test_xclick.py);
# PostgreSQL, the gateway's production database (its tests start a real server in a temp dir).
APT_PACKAGES := fonts-noto-cjk libgl1 libegl1 libmtdev1 xvfb xdotool postgresql openssl
APT_STAMP := $(VENV)/.apt-installed

.PHONY: setup run test typecheck bench bench-reconcile-10m fuzz faults soak vectors screenshots conformance-java clean help

help:
	@echo "make run     install what is missing, then run the system on local defaults (LANDSCAPE=1: 800x480 POS)"
	@echo "make test    install what is missing, then type-check (make typecheck) and run the tests"
	@echo "make typecheck  mypy over the tree; strict on protocol/ and the link packages (config: pyproject.toml)"
	@echo "make bench   run the benchmarks and print a JSON summary"
	@echo "make bench-reconcile-10m  the reconciliation benchmark up to 10M transactions per source"
	@echo "make fuzz    slow campaigns (fuzzing, fault injection at scale)"
	@echo "make faults  the standing fault campaign against the whole path (RUNS=500 SEED=1 MINUTES=)"
	@echo "make soak    10 minutes of mixed load with faults; fails unless every process's memory stays flat (SOAK_MINUTES=)"
	@echo "make vectors regenerate docs/vectors/his-interface-v1.json and -v1.1.json"
	@echo "make conformance-java  the Java example HIS (docs/examples/java) through the conformance kit (needs a JDK)"
	@echo "make screenshots regenerate docs/screenshots (every POS screen, offscreen)"

setup: $(STAMP)

$(APT_STAMP): Makefile  # a package added here is installed on the next make, too
	@mkdir -p $(VENV)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages:$$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: no apt-get; install these yourself:$$missing"; fi; \
	fi
	@touch $@

$(STAMP): setup.cfg pyproject.toml | $(APT_STAMP)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,ui]'
	@touch $@

# The whole system on local defaults: channel sandbox, a simulated POS (with its screens when there
# is a display), the bridge, and the HIS console. HEADLESS=1: no screens, no console (HIS vendors).
# LANDSCAPE=1: the POS window is an 800x480 landscape device (default: portrait 720x1280, scaled to fit).
# LINK=aoa: the simulated POS is an Android device the bridge switches to accessory mode (LINK=tcp: TCP).
# DEVICES=N (with HEADLESS=1): N simulated POS, one window (T0001, T0002, ...) each, behind one bridge.
# WECHAT=v2|v3|v2-provider|v3-provider: how the demo hospital takes WeChat Pay at the gateway (default v2).
# ALIPAY=public-key|cert|third-party: how it takes Alipay (third-party: our app, authorised with an app_auth_code;
# it goes with a -provider WECHAT, which it picks when WECHAT is not given).
run: setup
	$(PY) -m firmware_sim.system $(if $(HEADLESS),--headless,--auto)$(if $(LANDSCAPE), --orientation landscape)$(if $(LINK), --link $(LINK))$(if $(DEVICES), --devices $(DEVICES))$(if $(WECHAT), --wechat $(WECHAT))$(if $(ALIPAY), --alipay $(ALIPAY))

# The suite runs in TEST_WORKERS processes (pytest-xdist; default 2, one per core of the machine the
# budget is set for). Much of it waits on real processes, sockets and disks, so two workers finish in
# about half the wall time of one; `--dist loadscope` keeps a module's tests (and its module-scoped
# running system) on one worker. TEST_WORKERS=0 runs it in this process, for a debugger.
TEST_WORKERS ?= 2
test: setup typecheck
	$(PY) -m pytest -q -m "not slow" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope)

# The Java example (docs/examples/java/HisClient.java) as the HIS through every scenario of the
# conformance kit. A minute and a JDK, so not in `make test`: the JDK (default-jdk-headless, ~200 MB)
# is installed here with apt when javac is missing. `make test` still compiles HisEnvelope.java and
# runs it against the vectors whenever a JDK is present (tests/protocol/test_java_example.py).
conformance-java: setup
	@command -v javac >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends default-jdk-headless >/dev/null; }
	$(PY) -m pytest -q -m slow tests/firmware_sim/test_conformance.py -k java

# The type checker (issue 11): the whole tree, strict on protocol/, protocol/link and terminal/link.
# Its settings, and the list of modules whose errors are still known debt, are in pyproject.toml.
typecheck: setup
	$(PY) -m mypy

bench: setup
	@$(PY) -m bench

# Reconciliation at 10M transactions per source as well: not in `make bench`, because generating the
# 10M day (about 7 GB) takes from a quarter of an hour (idle machine) to most of an hour (busy one).
bench-reconcile-10m: setup
	@RECONCILE_BENCH_10M=1 $(PY) -m bench reconcile

# Slow campaigns: every test, the slow ones included, with hypothesis at 20,000 examples a property
# (tests/conftest.py). Takes hours; narrow it with ARGS, e.g. make fuzz ARGS=tests/protocol
fuzz: setup
	$(PY) -m pytest -q --hypothesis-profile=fuzz $(ARGS)

# The standing fault campaign (issue 14): randomised faults against the whole path, checked after every
# run; prints a table per fault type and fails on any violation. A fixed-seed slice runs in make test.
RUNS ?= 500
SEED ?= 1
faults: setup
	$(PY) -m tests.e2e.campaign --runs $(RUNS) --seed $(SEED) $(if $(MINUTES),--minutes $(MINUTES),) $(if $(FAULTS),--faults $(FAULTS),)

# The soak (issue 14): 10 minutes (SOAK_MINUTES) of mixed payments and refunds under every fault type,
# sampling every process's resident memory; fails on a violation or if memory is not flat
# (last quarter's median <= 1.1 x the second quarter's + 8 MiB, per process).
SOAK_MINUTES ?= 10
soak: setup
	$(PY) -m tests.e2e.campaign --runs 1000000 --minutes $(SOAK_MINUTES) --seed $(SEED) --soak

vectors: setup
	$(PY) -m protocol.vectors --write docs/vectors/his-interface-v1.json
	$(PY) -m protocol.vectors --spec 1.1 --write docs/vectors/his-interface-v1.1.json

screenshots: setup
	$(PY) -m terminal.ui.screenshots --out docs/screenshots

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis .mypy_cache
