# presplit.kvm -- entry points.  Every target installs what it needs first.
#   make demo   bring up the local lab, migrate guests, print a summary, tear down
#   make test   every test tier, ending with one pass/fail line
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := $(CURDIR)/.venv
PY        := $(VENV)/bin/python
COLL_ROOT := $(CURDIR)/build/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/presplit/kvm
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(VENV)/bin:$(PATH)

.PHONY: help deps collection-link unit sanity lint integration kernel kernel-packages kernel-upstream kernel-debug e2e e2e-ci e2e-1g e2e-molecule test demo \
        lab-up lab-down build clean

help:
	@echo "make demo   - local lab: start guests on one host, migrate them, summary"
	@echo "make test   - unit, sanity, lint, integration (molecule), kernel and e2e-ci tiers"
	@echo "make lab-up / lab-down - the lab alone (LAB_NAME=presplit)"
	@echo "make kernel-packages - opt-in: kernel_stage packages method end to end on a GRUB VM (~15 min, first ~1 h)"
	@echo "                       PRESPLIT_PACKAGE_CONFIG=debian: with the Debian-configured kernel (first build: hours)"
	@echo "make kernel-upstream - opt-in: upstream's x86 KVM selftests, stock vs patched modules side by side"
	@echo "make kernel-debug - opt-in: the kernel tier on a lockdep/KASAN/kmemleak kernel (first ~45 min, then ~16 min)"
	@echo "make e2e    - opt-in: 2 emulated hypervisors staged host by host, nested KVM guests pre-split and migrated (tests/e2e)"
	@echo "make e2e-ci - the e2e share that make test runs (staged hosts, migrations between them)"
	@echo "make e2e-1g - opt-in: that share with a guest on 1 GiB hugetlbfs pages"
	@echo "make e2e-molecule - opt-in: the e2e tier's core as the molecule scenario e2e (~20 min)"

deps: $(VENV)/.deps-stamp
$(VENV)/.deps-stamp: requirements.txt test-requirements.txt scripts/install-deps.sh
	./scripts/install-deps.sh

# Ansible finds the collection as presplit.kvm through this link.
collection-link:
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(CURDIR) $(COLL_LINK)

# Unit tests, and the run report rendered in headless Chromium.
# pytest exits 5 when it collects nothing: that is a broken test tree here.
unit: deps collection-link
	cd $(COLL_LINK) && $(PY) -m pytest tests/unit tests/report -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "unit: pytest collected no tests" >&2; fi; exit $$rc

sanity: deps
	./tests/run-sanity.sh

lint: deps collection-link
	ansible-lint --profile production

# Molecule scenarios on a real lab, the lab's own tests, and the memory
# integrity check (50 consecutive migrations of a memory-rewriting guest).
# Not the scenario e2e: make e2e-ci runs its flow and more in make test.
LAB_SCENARIOS := default failures rolling
integration: deps collection-link
	cd $(COLL_LINK) && for s in $(LAB_SCENARIOS); do molecule test -s $$s || exit 1; done
	$(PY) -m pytest tests/lab -q -p no:cacheprovider
	$(PY) tests/lab/memory_integrity.py --migrations 50

# The series itself (applies to the current candidate, checkpatch --strict,
# no new W=1 warnings), then the patched KVM under TCG: the ioctl tests, the
# host helper (Python layer and kvm-presplit CLI) against a VM held by another
# process and a real nested QEMU, and the kernel_stage role (modules method)
# over SSH.
kernel: deps collection-link
	./kernel-patch/check.sh
	./tests/kernel/run.sh
	./tests/kernel/run-helper.sh
	./tests/kernel/run-stage.sh

# Opt-in, not part of kernel or test: the kernel_stage role's packages method
# end to end on a Debian 12 VM booting through GRUB under TCG (install, one-shot
# boot, verify, rollback).  First run ~1 h (test kernel build), later ~15 min.
kernel-packages: deps collection-link
	./tests/kernel/run-packages.sh

# Opt-in, not part of kernel or test: every upstream x86 KVM selftest of the
# tree with the stock and with the patched modules, results side by side;
# fails when any differs.  Longer than CI's budget.
kernel-upstream: deps
	./tests/kernel/run-upstream.sh

# Opt-in, not part of kernel or test: the kernel tier's patched phases and
# upstream's dirty-log selftests on a 6.12 kernel built with the series and
# lockdep, PROVE_RCU, KASAN, DEBUG_ATOMIC_SLEEP, KMEMLEAK and KVM_PROVE_MMU;
# fails on any report.  First run ~25 min to build the kernel, then ~16 min.
kernel-debug: deps
	./tests/kernel/run-debug.sh

# The whole job on real parts: two Debian 12 hypervisors under TCG with
# emulated SVM + NPT, the patched KVM staged host by host with
# rolling_maintenance, KVM-accelerated nested guests (THP + dirty bitmap,
# hugetlbfs + dirty ring) pre-split and live-migrated by the collection's
# playbooks, every page of their workloads verified.  e2e: the whole tier;
# e2e-ci: the share make test runs (both hosts staged first, then the
# migrations between patched hosts); e2e is opt-in (about an hour).
e2e: deps collection-link
	./tests/e2e/run.sh

e2e-ci: deps collection-link
	E2E_PLAN=ci ./tests/e2e/run.sh

# The same share with a guest on 1 GiB hugetlbfs pages (2 GiB of RAM, hosts
# with a 1 GiB pool of 2 pages each): opt-in, its hosts have 5.5 GiB each.
e2e-1g: deps collection-link
	E2E_PLAN=ci E2E_GUESTS=e2e3:hugetlb-1G:bitmap ./tests/e2e/run.sh

# The e2e tier's core as a molecule scenario (extensions/molecule/e2e): the hosts
# from tests/e2e/run.sh (E2E_PLAN=hosts), then kernel_stage, migrate and the
# checks as playbooks.
e2e-molecule: deps collection-link
	cd $(COLL_LINK) && molecule test -s e2e

test: deps
	./tests/run-all.sh

lab-up: deps collection-link
	ansible-playbook presplit.kvm.lab_up -e lab_name=$(or $(LAB_NAME),presplit)

lab-down: deps collection-link
	ansible-playbook presplit.kvm.lab_down -e lab_name=$(or $(LAB_NAME),presplit)

demo: deps collection-link
	./scripts/demo.sh

build: deps
	ansible-galaxy collection build --force --output-path build/dist

clean:
	rm -rf build .pytest_cache
