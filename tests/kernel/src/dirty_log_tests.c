// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_CLEAR_DIRTY_LOG and the vCPUs that wait for mmu_lock meanwhile.
 *
 * The CLEAR write-protects its range with mmu_lock held for write, one
 * kvm_arch_mmu_enable_log_dirty_pt_masked() call per 64-page word.  Over
 * memory that is mapped with 4K pages (a pre-split guest, or one backed by
 * small pages) the stock 6.12 CLEAR never lets go of the lock from its first
 * word to its last, so a vCPU that faults on fresh memory waits for the whole
 * range; the series' first patch makes the CLEAR give the lock up after every
 * CLEAR_YIELD_WORDS words if someone waits and the kernel is preemptible
 * (rwlock_needbreak()): the guest boots with preempt=full.
 *
 * Both cases read the hand-overs from the kernel's own trace (clear_trace in
 * ktest.h) rather than from how far the vCPU got, which depends on how the
 * two threads are scheduled: the stock CLEAR cannot make one, whatever the
 * timing.  A CLEAR during which the vCPU never began waiting says nothing
 * either way (the vCPU was not scheduled then): it is run again in a new VM.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktest.h"

#define LOGGED_GPA	SZ_1G
#define LOGGED_SIZE	(256 * 1024 * 1024ULL)
#define LOGGED_WORDS	(LOGGED_SIZE / SZ_4K / 64)
#define FRESH_GPA	(2 * SZ_1G)
#define FRESH_SIZE	(256 * 1024 * 1024ULL)
#define FRESH_SLOT	(FIRST_TEST_SLOT + 1)

/*
 * CLEARs to run, each in a new VM, until the vCPU waits during one: it did
 * in nearly every CLEAR here, so 20 in a row without is a broken test.
 */
#define MAX_CLEARS		20
/*
 * A wait that began just before the CLEAR's last check for waiters may
 * become visible to the CLEAR only after it (the vCPU's trace event comes a
 * few instructions before it queues on the lock), so one CLEAR with a wait
 * and no hand-over can happen with a yielding CLEAR; three are not expected
 * from one (none was seen here).
 */
#define MAX_WAITS_NOT_HANDED_OVER	3

/*
 * A VM with 256 MiB mapped with 4K pages under manual-protect, initially-set
 * dirty logging, so that one CLEAR write-protects 65536 mappings in 1024
 * words, and a vCPU faulting in fresh memory in another slot; the trace of
 * the CLEAR.
 */
static struct clear_trace trace_one_clear(void)
{
	struct vm *vm = vm_create();
	void *logged = alloc_small_pages(LOGGED_SIZE);
	size_t bitmap_size = LOGGED_SIZE / SZ_4K / 8;
	struct kvm_clear_dirty_log clear = {
		.slot = FIRST_TEST_SLOT,
		.num_pages = LOGGED_SIZE / SZ_4K,
		.dirty_bitmap = malloc(bitmap_size),
	};
	uint64_t start_ns, clear_ns;
	struct fresh_faulter f;
	struct clear_trace t;
	struct page_counts c;
	struct vcpu *vcpu;

	/* Host pages present: time KVM's fault path, not page allocation. */
	memset(logged, 0, LOGGED_SIZE);
	vm_enable_manual_dirty_log(vm, true);
	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, LOGGED_GPA, LOGGED_SIZE, logged);
	vcpu = vcpu_create(vm, 0);
	vcpu_prefault(vcpu, LOGGED_GPA, LOGGED_SIZE);
	vcpu_destroy(vcpu);
	c = vm_page_counts(vm);
	ASSERT(c.pages_4k >= LOGGED_SIZE / SZ_4K && !c.pages_2m && !c.pages_1g,
	       "the logged slot is not mapped with 4K pages: 4k=%llu 2m=%llu",
	       (unsigned long long)c.pages_4k, (unsigned long long)c.pages_2m);
	/* Initially-set: every bit set, nothing write-protected yet. */
	vm_set_memslot(vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES, LOGGED_GPA,
		       LOGGED_SIZE, logged);
	memset(clear.dirty_bitmap, 0xff, bitmap_size);

	fresh_faulter_create(&f, vm, 1, FRESH_SLOT, FRESH_GPA, FRESH_SIZE);
	fresh_faulter_run(&f);
	/* Until its first write: the vCPU runs. */
	while (!*(volatile uint32_t *)f.mem)
		;
	clear_trace_start(gettid(), f.tid);
	clear_trace_mark();
	start_ns = now_ns();
	CHECKED_IOCTL(vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
	clear_ns = now_ns() - start_ns;
	t = clear_trace_stop();
	fresh_faulter_stop(&f);

	ktest_log("CLEAR of %llu pages took %.1f ms; the faulting vCPU began %u waits for mmu_lock during it and got it %u times",
		  (unsigned long long)(LOGGED_SIZE / SZ_4K), clear_ns / 1e6,
		  t.waits, t.handovers);
	/* Every word of the bitmap is set: one missing means the function
	 * is no longer what the CLEAR calls per word. */
	ASSERT_EQ(t.words, LOGGED_WORDS);
	/* 4K mappings: no split inside a word drops the lock. */
	ASSERT(!t.handovers_off_batch,
	       "%u of %u hand-overs came after a number of words that is not a multiple of %d",
	       t.handovers_off_batch, t.handovers, CLEAR_YIELD_WORDS);
	vm_destroy(vm);
	munmap(logged, LOGGED_SIZE);
	free(clear.dirty_bitmap);
	return t;
}

/* Patched modules: the CLEAR hands the lock over while the vCPU waits. */
static void clear_lets_faulting_vcpu_in(void)
{
	unsigned int not_handed_over = 0;

	ASSERT(kernel_preemptible(),
	       "the guest kernel is not preemptible (boot it with preempt=full): a CLEAR gives mmu_lock up to a waiter only there");
	for (int i = 0; i < MAX_CLEARS; i++) {
		struct clear_trace t = trace_one_clear();

		if (t.handovers)
			return;
		not_handed_over += t.waits > 0;
		ASSERT(not_handed_over < MAX_WAITS_NOT_HANDED_OVER,
		       "the vCPU waited for mmu_lock during %u CLEARs and never got it before their last word",
		       not_handed_over);
	}
	ASSERT(false, "the vCPU never waited for mmu_lock during %d CLEARs",
	       MAX_CLEARS);
}

/* Stock modules: what the first case would see without the patch. */
static void clear_blocks_faulting_vcpu(void)
{
	for (int i = 0; i < MAX_CLEARS; i++) {
		struct clear_trace t = trace_one_clear();

		ASSERT(!t.handovers,
		       "the vCPU got mmu_lock %u times between a stock CLEAR's first and last word: does this kernel's CLEAR yield it already?",
		       t.handovers);
		if (t.waits)
			return;
	}
	ASSERT(false, "the vCPU never waited for mmu_lock during %d CLEARs",
	       MAX_CLEARS);
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
