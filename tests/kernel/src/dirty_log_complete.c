// SPDX-License-Identifier: GPL-2.0
/*
 * Dirty-log completeness while KVM_CLEAR_DIRTY_LOG hands mmu_lock over: every
 * page a vCPU writes after its CLEAR is reported by the next GET, over
 * several GET/CLEAR passes the way QEMU runs a migration, with and without a
 * pre-split and HOLD, with kvm.eager_page_split on and off, over 4K, 2M (THP)
 * and 1G (hugetlbfs) backing.  A lost dirty bit is a guest page a migration
 * never sends again: silent corruption.
 *
 * One vCPU rewrites the logged slot all the time (it adds 1 to the first
 * dword of each page it writes, sweep after sweep); another faults in fresh
 * memory in a slot of its own, so that it waits for mmu_lock whenever a CLEAR
 * holds it and the CLEAR has someone to hand the lock to.  Each pass is
 * QEMU's: one GET_DIRTY_LOG, then a CLEAR per 1 GiB chunk (QEMU's
 * clear-bitmap-shift 18) with the chunk's pages "sent" (read) right after
 * it.  Before each GET every counter is read: one that differs from what was
 * last sent was written after that send, so after its CLEAR, and the GET
 * must report its page.  Each read comes before the GET, so the check holds
 * however the threads run.  A last pass after the writer has stopped checks
 * its last writes.  A lost bit of a page that the vCPU writes again before
 * the next GET comes back with that write; what the check catches is what
 * corrupts a migrated guest: a page changed since it was last sent that the
 * GET does not report (a GET with one page's bit masked out fails it).
 *
 * With the series' modules (KVM_CAP_SPLIT_HUGE_PAGES), passes go on until the
 * trace shows a hand-over (clear_trace in ktest.h): the yielding path really
 * ran.  The stock modules never hand over; there the cases without a
 * pre-split check the test itself.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktest.h"

#define LOGGED_GPA	SZ_1G
#define FRESH_SLOT	(FIRST_TEST_SLOT + 1)
#define FRESH_GPA	(2 * SZ_1G + SZ_1G / 2)
#define FRESH_SIZE	(16 * 1024 * 1024ULL)
#define CLEAR_CHUNK	SZ_1G
/*
 * The writer's pages per sweep, spread over the slot (256 MiB, or the 1 GiB
 * page) so that each CLEAR has 1024 words (2048) with bits to clear: as
 * many chances to hand the lock over, as in dirty_log_tests.
 */
#define PAGES_WRITTEN	2048ULL
#define MIN_PASSES	3
/* Passes until a hand-over: the most seen here was 15. */
#define MAX_PASSES	60

enum backing { SMALL, THP, HUGETLB_1G };

struct setup {
	enum backing backing;
	bool presplit;		/* split to 4K with HOLD before logging */
	bool eager_split;
};

struct writer {
	struct vcpu *vcpu;
	pthread_t thread;
	atomic_uint sweeps;
};

/* The logged slot and what the "migration" knows of it. */
struct logged {
	struct vm *vm;
	uint8_t *mem;
	uint64_t size, stride;
	uint64_t *bitmap;
	uint32_t *sent;		/* per written page: the value last sent */
	uint32_t *before_get;
	uint64_t writes_reported;	/* changed pages the GETs reported */
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	while (vcpu_run_pass(w->vcpu) == 0)
		atomic_fetch_add(&w->sweeps, 1);
	return NULL;
}

static volatile uint32_t *counter(struct logged *l, uint64_t i)
{
	return (volatile uint32_t *)(l->mem + i * l->stride);
}

static bool reported(struct logged *l, uint64_t i)
{
	uint64_t page = i * l->stride / SZ_4K;

	return l->bitmap[page / 64] & (1ULL << (page % 64));
}

/*
 * One pass.  Returns how many pages written after their CLEAR the GET did
 * not report (0 unless KVM lost a dirty bit), naming the first.
 */
static uint64_t dirty_log_pass(struct logged *l, int pass)
{
	struct kvm_dirty_log get = { .slot = FIRST_TEST_SLOT, .dirty_bitmap = l->bitmap };
	uint64_t npages = l->size / SZ_4K, lost = 0;

	for (uint64_t i = 0; i < PAGES_WRITTEN; i++)
		l->before_get[i] = *counter(l, i);
	CHECKED_IOCTL(l->vm->fd, KVM_GET_DIRTY_LOG, &get);
	for (uint64_t i = 0; i < PAGES_WRITTEN; i++) {
		if (l->before_get[i] == l->sent[i])
			continue;
		if (reported(l, i)) {
			l->writes_reported++;
			continue;
		}
		if (!lost++)
			ktest_log("pass %d: page at GPA 0x%llx was sent as %u, then written (%u) and not reported dirty",
				  pass, (unsigned long long)(LOGGED_GPA + i * l->stride),
				  l->sent[i], l->before_get[i]);
	}
	for (uint64_t first = 0; first < npages; first += CLEAR_CHUNK / SZ_4K) {
		uint64_t n = npages - first < CLEAR_CHUNK / SZ_4K ?
			     npages - first : CLEAR_CHUNK / SZ_4K;
		struct kvm_clear_dirty_log clear = {
			.slot = FIRST_TEST_SLOT, .first_page = first,
			.num_pages = n, .dirty_bitmap = l->bitmap + first / 64,
		};
		uint64_t i_first = first * SZ_4K / l->stride;
		uint64_t i_end = (first + n) * SZ_4K / l->stride;

		clear_trace_mark();
		CHECKED_IOCTL(l->vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
		for (uint64_t i = i_first; i < i_end; i++)
			if (reported(l, i))
				l->sent[i] = *counter(l, i);
	}
	return lost;
}

/* The write loop's step from page to page (ecx, see ktest.c). */
static void set_stride(struct vcpu *vcpu, uint64_t stride)
{
	struct kvm_regs regs;

	CHECKED_IOCTL(vcpu->fd, KVM_GET_REGS, &regs);
	regs.rcx = stride;
	CHECKED_IOCTL(vcpu->fd, KVM_SET_REGS, &regs);
}

static void wait_for_sweep(struct writer *w)
{
	unsigned int start = atomic_load(&w->sweeps);

	/* The one under way may have begun before: two more must end. */
	while (atomic_load(&w->sweeps) - start < 2)
		usleep(1000);
}

static bool has_presplit(struct vm *vm)
{
	return ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES) > 0;
}

static void *alloc_backing(enum backing backing, uint64_t size)
{
	switch (backing) {
	case THP:
		return alloc_thp(size);
	case HUGETLB_1G:
		return alloc_hugetlb_1g(size);
	default:
		return memset(alloc_small_pages(size), 0, size);
	}
}

static void check_completeness(const struct setup *s)
{
	uint64_t size = s->backing == HUGETLB_1G ? SZ_1G : 256 * 1024 * 1024ULL;
	struct logged l = {
		.vm = vm_create(), .size = size, .stride = size / PAGES_WRITTEN,
		.bitmap = calloc(size / SZ_4K / 64, sizeof(uint64_t)),
		.sent = calloc(PAGES_WRITTEN, sizeof(uint32_t)),
		.before_get = calloc(PAGES_WRITTEN, sizeof(uint32_t)),
	};
	struct writer w = { .sweeps = 0 };
	struct fresh_faulter f;
	struct clear_trace t, total = { 0 };
	bool patched = has_presplit(l.vm);
	struct page_counts c;
	uint64_t lost;
	int pass;

	ASSERT(patched || !s->presplit, "a pre-split needs the series' modules");
	ASSERT(!patched || kernel_preemptible(),
	       "the guest kernel is not preemptible (boot it with preempt=full): a CLEAR gives mmu_lock up to a waiter only there");
	ASSERT(set_eager_split(s->eager_split), EAGER_SPLIT_PARAM ": %m");
	l.mem = alloc_backing(s->backing, size);
	vm_enable_manual_dirty_log(l.vm, true);
	vm_set_memslot(l.vm, FIRST_TEST_SLOT, 0, LOGGED_GPA, size, l.mem);
	w.vcpu = vcpu_create_writer(l.vm, 0, LOGGED_GPA, size);
	set_stride(w.vcpu, l.stride);
	/* Mapped as backed, as a running guest's memory is. */
	vcpu_prefault(w.vcpu, LOGGED_GPA, size);
	c = vm_page_counts(l.vm);
	print_page_counts("mapped", c);
	ASSERT(s->backing != THP || c.pages_2m == size / SZ_2M, "THP not mapped 2M");
	ASSERT(s->backing != HUGETLB_1G || c.pages_1g == 1, "hugetlbfs 1G not mapped 1G");
	if (s->presplit) {
		if (s->backing == HUGETLB_1G)
			split_range(l.vm->fd, LOGGED_GPA, size,
				    SZ_2M, 0);
		split_range(l.vm->fd, LOGGED_GPA, size,
			    SZ_4K, KVM_SPLIT_HUGE_PAGES_HOLD);
		c = vm_page_counts(l.vm);
		ASSERT(!c.pages_2m && !c.pages_1g, "huge mappings left after the pre-split");
	}

	fresh_faulter_create(&f, l.vm, 1, FRESH_SLOT, FRESH_GPA, FRESH_SIZE);
	fresh_faulter_run(&f);
	install_noop_handler(SIGUSR1);	/* for vcpu_stop_thread() */
	pthread_create(&w.thread, NULL, writer_thread, &w);

	/* Initially-set: the first pass sends every page. */
	vm_set_memslot(l.vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES,
		       LOGGED_GPA, size, l.mem);
	for (pass = 0;; pass++) {
		wait_for_sweep(&w);
		clear_trace_start(gettid(), f.tid);
		lost = dirty_log_pass(&l, pass);
		t = clear_trace_stop();
		ASSERT(!lost, "pass %d: %llu pages written after their CLEAR were not reported dirty",
		       pass, (unsigned long long)lost);
		ASSERT_EQ(t.clears, (size + CLEAR_CHUNK - 1) / CLEAR_CHUNK);
		total.words += t.words;
		total.waits += t.waits;
		total.handovers += t.handovers;
		if (pass + 1 >= MIN_PASSES && (total.handovers || !patched))
			break;
		ASSERT(pass + 1 < MAX_PASSES,
		       "no CLEAR handed mmu_lock to the faulting vCPU in %d passes (it began %u waits during them)",
		       MAX_PASSES, total.waits);
	}
	/* What the writer wrote since the last pass, up to its very end. */
	vcpu_stop_thread(w.vcpu, w.thread);
	clear_trace_start(gettid(), f.tid);
	lost = dirty_log_pass(&l, ++pass);
	clear_trace_stop();
	ASSERT(!lost, "last pass: %llu pages written after their CLEAR were not reported dirty",
	       (unsigned long long)lost);
	fresh_faulter_stop(&f);

	/* Every page the writer wrote was reported at least once per pass. */
	ASSERT(l.writes_reported >= (uint64_t)pass * PAGES_WRITTEN,
	       "only %llu changed pages reported over %d passes",
	       (unsigned long long)l.writes_reported, pass);
	ktest_log("%d passes, %llu page writes reported, none lost; CLEARs: %u words, the faulting vCPU began %u waits for mmu_lock and got it %u times between words",
		  pass + 1, (unsigned long long)l.writes_reported, total.words,
		  total.waits, total.handovers);
	print_page_counts("at the end", vm_page_counts(l.vm));
	vcpu_destroy(w.vcpu);
	vm_destroy(l.vm);
	munmap(l.mem, size);
	free(l.bitmap);
	free(l.sent);
	free(l.before_get);
}

#define CASE(name, backing, presplit, eager)				\
	static void name(void)						\
	{								\
		const struct setup s = { backing, presplit, eager };	\
		check_completeness(&s);					\
	}
CASE(small, SMALL, false, true)
CASE(small_no_eager, SMALL, false, false)
CASE(small_presplit, SMALL, true, true)
CASE(thp, THP, false, true)
CASE(thp_no_eager, THP, false, false)
CASE(thp_presplit, THP, true, true)
CASE(thp_presplit_no_eager, THP, true, false)
CASE(hugetlb_1g, HUGETLB_1G, false, true)
CASE(hugetlb_1g_no_eager, HUGETLB_1G, false, false)
CASE(hugetlb_1g_presplit, HUGETLB_1G, true, true)
CASE(hugetlb_1g_presplit_no_eager, HUGETLB_1G, true, false)
#undef CASE

static const struct ktest_case cases[] = {
	{ "small", small },
	{ "small_no_eager", small_no_eager },
	{ "small_presplit", small_presplit },
	{ "thp", thp },
	{ "thp_no_eager", thp_no_eager },
	{ "thp_presplit", thp_presplit },
	{ "thp_presplit_no_eager", thp_presplit_no_eager },
	{ "hugetlb_1g", hugetlb_1g },
	{ "hugetlb_1g_no_eager", hugetlb_1g_no_eager },
	{ "hugetlb_1g_presplit", hugetlb_1g_presplit },
	{ "hugetlb_1g_presplit_no_eager", hugetlb_1g_presplit_no_eager },
};

int main(int argc, char **argv)
{
	/* Each case sets eager_page_split; the host gets its own back. */
	bool eager_was = read_eager_split();
	int r;

	r = ktest_main("dirty_log_complete", cases,
		       sizeof(cases) / sizeof(cases[0]), argc, argv);
	ASSERT(set_eager_split(eager_was), EAGER_SPLIT_PARAM ": %m");
	return r;
}
