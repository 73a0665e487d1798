// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_CLEAR_DIRTY_LOG and the vCPUs that wait for mmu_lock meanwhile.
 *
 * The CLEAR write-protects its range with mmu_lock held for write.  Over
 * memory that is mapped with 4K pages (a pre-split guest, or one backed by
 * small pages) the stock 6.12 CLEAR never lets go of the lock, so a vCPU that
 * faults on fresh memory waits for the whole range; the series' first patch
 * makes the CLEAR drop the lock between two 64-page words when someone waits.
 *
 * Both cases measure the same thing: how many fresh pages a faulting vCPU
 * maps while one CLEAR over 256 MiB of 4K mappings runs.  With the stock
 * modules that is 0 or 1 (a fault that got the lock just before the CLEAR
 * did); with the patched ones the vCPU keeps faulting, once per lock
 * hand-over: 112-400 times here.  The counts are not timings: the CLEAR
 * checks for a waiter at each of its 1024 words, and under TCG the two guest
 * CPUs take turns whenever the one that waits for the lock spins (PAUSE).
 *
 * The count also takes in what the vCPU does after the CLEAR has dropped the
 * lock, while the CLEAR waits for its TLB flush IPI to be handled: under
 * single-threaded TCG the vCPU may then run on for a whole time slice (110
 * pages once, with the stock modules).  That only ever adds pages, so each
 * case takes the fewest over three CLEARs, each in a VM of its own.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "ktest.h"

#define LOGGED_GPA	SZ_1G
#define LOGGED_SIZE	(256 * 1024 * 1024ULL)
#define FRESH_GPA	(2 * SZ_1G)
#define FRESH_SIZE	(256 * 1024 * 1024ULL)
#define FRESH_SLOT	(FIRST_TEST_SLOT + 1)

/*
 * A CLEAR that holds the lock throughout lets in at most the fault that got
 * it first, and one fault may finish while the CLEAR flushes TLBs; one that
 * hands the lock over lets in a fault per hand-over (112-400 seen here).
 */
#define YIELDING_CLEAR_MIN_FAULTS	16

struct faulter {
	struct vcpu *vcpu;
	volatile uint32_t *mem;	/* host view of the fresh slot */
	pthread_t thread;
};

static void *faulter_thread(void *arg)
{
	struct faulter *f = arg;

	/* One pass is more than the test needs; it ends with the kick. */
	vcpu_run_pass(f->vcpu);
	return NULL;
}

/*
 * The write loop adds 1 to the first dword of each page in order, so the
 * pages it reached so far are the ones before the first zero.
 */
static uint64_t pages_faulted(struct faulter *f)
{
	uint64_t lo = 0, hi = FRESH_SIZE / SZ_4K;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (f->mem[mid * SZ_4K / 4])
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * A VM with 256 MiB mapped with 4K pages under manual-protect, initially-set
 * dirty logging, so that one CLEAR write-protects 65536 mappings, and a vCPU
 * faulting in fresh memory in another slot.  Returns how many fresh pages the
 * vCPU mapped during the CLEAR.
 */
static uint64_t faults_during_one_clear(void)
{
	struct vm *vm = vm_create();
	void *logged = alloc_small_pages(LOGGED_SIZE);
	size_t bitmap_size = LOGGED_SIZE / SZ_4K / 8;
	struct kvm_clear_dirty_log clear = {
		.slot = FIRST_TEST_SLOT,
		.num_pages = LOGGED_SIZE / SZ_4K,
		.dirty_bitmap = malloc(bitmap_size),
	};
	uint64_t before, after, start_ns, clear_ns;
	struct page_counts c;
	struct faulter f;

	/* Host pages present: time KVM's fault path, not page allocation. */
	memset(logged, 0, LOGGED_SIZE);
	f.mem = alloc_small_pages(FRESH_SIZE);
	memset((void *)f.mem, 0, FRESH_SIZE);

	vm_enable_manual_dirty_log(vm, true);
	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, LOGGED_GPA, LOGGED_SIZE, logged);
	vm_set_memslot(vm, FRESH_SLOT, 0, FRESH_GPA, FRESH_SIZE, (void *)f.mem);
	f.vcpu = vcpu_create_writer(vm, 0, FRESH_GPA, FRESH_SIZE);
	vcpu_prefault(f.vcpu, LOGGED_GPA, LOGGED_SIZE);
	c = vm_page_counts(vm);
	ASSERT(c.pages_4k >= LOGGED_SIZE / SZ_4K && !c.pages_2m && !c.pages_1g,
	       "the logged slot is not mapped with 4K pages: 4k=%llu 2m=%llu",
	       (unsigned long long)c.pages_4k, (unsigned long long)c.pages_2m);
	/* Initially-set: every bit set, nothing write-protected yet. */
	vm_set_memslot(vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES, LOGGED_GPA,
		       LOGGED_SIZE, logged);
	memset(clear.dirty_bitmap, 0xff, bitmap_size);

	install_noop_handler(SIGUSR1);
	pthread_create(&f.thread, NULL, faulter_thread, &f);
	while (pages_faulted(&f) < 16)
		;

	before = pages_faulted(&f);
	start_ns = now_ns();
	CHECKED_IOCTL(vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
	clear_ns = now_ns() - start_ns;
	after = pages_faulted(&f);

	vcpu_stop_thread(f.vcpu, f.thread);
	ASSERT(after < FRESH_SIZE / SZ_4K,
	       "the vCPU ran out of fresh memory during the CLEAR");
	ktest_log("CLEAR of %llu pages took %.1f ms; the faulting vCPU mapped %llu fresh pages meanwhile",
		  (unsigned long long)(LOGGED_SIZE / SZ_4K), clear_ns / 1e6,
		  (unsigned long long)(after - before));
	vcpu_destroy(f.vcpu);
	vm_destroy(vm);
	munmap(logged, LOGGED_SIZE);
	munmap((void *)f.mem, FRESH_SIZE);
	free(clear.dirty_bitmap);
	return after - before;
}

/* The fewest fresh pages mapped during a CLEAR, over three of them. */
static uint64_t faults_during_clear(void)
{
	uint64_t fewest = UINT64_MAX, faults;

	for (int i = 0; i < 3; i++) {
		faults = faults_during_one_clear();
		if (faults < fewest)
			fewest = faults;
	}
	return fewest;
}

/* Patched modules: the CLEAR hands the lock over while the vCPU waits. */
static void clear_lets_faulting_vcpu_in(void)
{
	uint64_t faults = faults_during_clear();

	ASSERT(faults >= YIELDING_CLEAR_MIN_FAULTS,
	       "only %llu faults got in during the CLEAR",
	       (unsigned long long)faults);
}

/* Stock modules: what the first case would see without the patch. */
static void clear_blocks_faulting_vcpu(void)
{
	uint64_t faults = faults_during_clear();

	ASSERT(faults < YIELDING_CLEAR_MIN_FAULTS,
	       "%llu faults got in during a CLEAR of the stock modules: "
	       "does this kernel's CLEAR yield mmu_lock already?",
	       (unsigned long long)faults);
}

static const struct ktest_case cases[] = {
	{ "clear_lets_faulting_vcpu_in", clear_lets_faulting_vcpu_in },
	{ "clear_blocks_faulting_vcpu", clear_blocks_faulting_vcpu },
};

int main(int argc, char **argv)
{
	return ktest_main("dirty_log_tests",
			  cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
}
