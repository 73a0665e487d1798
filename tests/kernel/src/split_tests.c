// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_SPLIT_HUGE_PAGES against a real patched KVM: results are asserted with
 * the mapping counters of the VM's binary stats fd (pages_4k/2m/1g).
 *
 * Memory is THP (populated by the host, then mapped by KVM_PRE_FAULT_MEMORY)
 * or a reserved hugetlb 1G page; test memslots start at 1 GiB.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "ktest.h"

#define HOLD		KVM_SPLIT_HUGE_PAGES_HOLD
#define RELEASE		KVM_SPLIT_HUGE_PAGES_RELEASE
#define QUERY		KVM_SPLIT_HUGE_PAGES_QUERY
/* What the capability reports on x86: the target page sizes, ORed. */
#define SIZES		(SZ_4K | SZ_2M)

#define SLOT_GPA	SZ_1G
#define PAGES_PER_2M	(SZ_2M / SZ_4K)
#define HALF_2M		(SZ_2M / 2)

/* A VM with one THP-backed memslot, mapped huge by KVM_PRE_FAULT_MEMORY. */
struct thp_vm {
	struct vm *vm;
	struct vcpu *vcpu;
	void *mem;
	uint64_t gpa, size;
};

static struct thp_vm thp_vm_create(uint64_t gpa, uint64_t size)
{
	struct thp_vm t = { .vm = vm_create(), .gpa = gpa, .size = size };

	t.mem = alloc_thp(size);
	vm_set_memslot(t.vm, FIRST_TEST_SLOT, 0, gpa, size, t.mem);
	t.vcpu = vcpu_create(t.vm, 0);
	vcpu_prefault(t.vcpu, gpa, size);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, size / SZ_2M);
	return t;
}

/*
 * Make KVM fault the slot in again from scratch: MADV_DONTNEED zaps the
 * SPTEs through the MMU notifier, the host repopulates the memory with THPs,
 * and KVM_PRE_FAULT_MEMORY maps it at the largest level KVM allows.
 */
static void zap_and_refault(struct thp_vm *t)
{
	ASSERT(!madvise(t->mem, t->size, MADV_DONTNEED), "MADV_DONTNEED: %m");
	memset(t->mem, 0, t->size);
	ASSERT(anon_huge_bytes() >= t->size, "repopulated without THPs");
	vcpu_prefault(t->vcpu, t->gpa, t->size);
}

static void capability_reports_sizes(void)
{
	struct vm *vm = vm_create();

	ASSERT_EQ(ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES), SIZES);
	ASSERT_EQ(ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES), SIZES);
}

static void split_2m_to_4k_whole_slot(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 256 * SZ_2M);
	struct page_counts before = vm_page_counts(t.vm), after;

	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 256);
	after = vm_page_counts(t.vm);
	print_page_counts("before", before);
	print_page_counts("after", after);
	ASSERT_EQ(after.pages_2m, 0);
	ASSERT_EQ(after.pages_4k - before.pages_4k, 256 * PAGES_PER_2M);

	/* Nothing is left to split. */
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, after.pages_4k);
}

static void split_1g_to_2m_to_4k(void)
{
	const uint64_t gpa = 4 * SZ_1G;
	struct vm *vm = vm_create();
	struct vcpu *vcpu = vcpu_create(vm, 0);
	struct page_counts c;

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, gpa, SZ_1G, alloc_hugetlb_1g(SZ_1G));
	vcpu_prefault(vcpu, gpa, SZ_1G);
	ASSERT_EQ(vm_page_counts(vm).pages_1g, 1);

	ASSERT_EQ(split_range(vm->fd, gpa, SZ_1G, SZ_2M, 0), 1);
	c = vm_page_counts(vm);
	print_page_counts("after the 2M pass", c);
	ASSERT_EQ(c.pages_1g, 0);
	ASSERT_EQ(c.pages_2m, 512);

	ASSERT_EQ(split_range(vm->fd, gpa, SZ_1G, SZ_4K, 0), 512);
	c = vm_page_counts(vm);
	print_page_counts("after the 4K pass", c);
	ASSERT_EQ(c.pages_1g, 0);
	ASSERT_EQ(c.pages_2m, 0);
	ASSERT_EQ(c.pages_4k, 512 * PAGES_PER_2M);
}

/* Every huge mapping that intersects the range is split, and only those. */
static void split_partial_range(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);
	struct kvm_split_huge_pages args = {
		/* From inside 2M page 3 to inside 2M page 7. */
		.gpa = t.gpa + 3 * SZ_2M + SZ_4K, .size = 4 * SZ_2M,
		.page_size = SZ_4K,
	};

	ASSERT_EQ(split_once(t.vm->fd, &args), 0);
	ASSERT_EQ(args.nr_split, 5);
	ASSERT_EQ(args.gpa, t.gpa + 7 * SZ_2M + SZ_4K);
	ASSERT_EQ(args.size, 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 27);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, 5 * PAGES_PER_2M);

	/* A single 4K page of an unsplit 2M page splits that page. */
	ASSERT_EQ(split_range(t.vm->fd, t.gpa + 20 * SZ_2M + 8 * SZ_4K, SZ_4K,
			      SZ_4K, 0), 1);
	/* 2M mappings are not above level 2M: nothing to do. */
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_2M, 0), 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 26);
}

/*
 * Three memslots with holes between and around them, in a range that is
 * the whole 52-bit guest physical address space: the holes are stepped
 * over, not walked a chunk at a time.
 */
static void split_across_memslots_and_holes(void)
{
	static const struct { uint64_t gpa, size; } slots[] = {
		{ SLOT_GPA, 16 * SZ_2M },
		{ SLOT_GPA + 64 * SZ_2M, 16 * SZ_2M },
		{ SLOT_GPA + 128 * SZ_2M, 32 * SZ_2M },
	};
	struct vm *vm = vm_create();
	struct vcpu *vcpu = vcpu_create(vm, 0);
	uint64_t start = 0, end = 1ULL << 52;

	for (int i = 0; i < 3; i++) {
		vm_set_memslot(vm, FIRST_TEST_SLOT + i, 0, slots[i].gpa,
			       slots[i].size, alloc_thp(slots[i].size));
		vcpu_prefault(vcpu, slots[i].gpa, slots[i].size);
	}
	ASSERT_EQ(vm_page_counts(vm).pages_2m, 64);
	ASSERT_EQ(split_range(vm->fd, start, end - start, SZ_4K, 0), 64);
	ASSERT_EQ(vm_page_counts(vm).pages_2m, 0);
	ASSERT_EQ(vm_page_counts(vm).pages_4k, 64 * PAGES_PER_2M);
}

/*
 * A periodic timer signal interrupts a split of 4 GiB of huge mappings
 * (four memslots aliasing one THP buffer): the call returns -EINTR with
 * gpa/size advanced and nr_split counting its own work, and re-issuing the
 * same struct finishes the job with nothing split twice or missed.
 */
static void split_resumes_after_signal(void)
{
	const uint64_t slot_size = 256 * SZ_2M, nr_slots = 4;
	const uint64_t start = SZ_1G, end = start + nr_slots * SZ_1G;
	struct vm *vm = vm_create();
	struct vcpu *vcpu = vcpu_create(vm, 0);
	void *mem = alloc_thp(slot_size);
	struct itimerval tick = { { 0, 500 }, { 0, 500 } }, off = { 0 };
	struct kvm_split_huge_pages args = {
		.gpa = start, .size = end - start, .page_size = SZ_4K,
	};
	uint64_t total = 0, interrupted = 0, calls = 0;
	int r;

	for (uint64_t i = 0; i < nr_slots; i++) {
		vm_set_memslot(vm, FIRST_TEST_SLOT + i, 0, start + i * SZ_1G,
			       slot_size, mem);
		vcpu_prefault(vcpu, start + i * SZ_1G, slot_size);
	}
	ASSERT_EQ(vm_page_counts(vm).pages_2m, nr_slots * 256);

	install_noop_handler(SIGALRM);
	setitimer(ITIMER_REAL, &tick, NULL);
	do {
		uint64_t gpa_before = args.gpa;

		args.nr_split = 0;
		r = split_once(vm->fd, &args);
		calls++;
		ASSERT(r == 0 || r == -EINTR || r == -EAGAIN, "%s", strerror(-r));
		ASSERT_EQ(args.gpa + args.size, end);
		ASSERT(args.gpa >= gpa_before, "gpa went back");
		ASSERT_EQ(args.gpa % SZ_4K, 0);
		total += args.nr_split;
		if (r && args.gpa > gpa_before && args.size) {
			/* Interrupted with progress: finish without the timer. */
			interrupted++;
			setitimer(ITIMER_REAL, &off, NULL);
			ktest_log("-EINTR/-EAGAIN after 0x%llx bytes, %llu split",
				  (unsigned long long)(args.gpa - start),
				  (unsigned long long)total);
		}
	} while (r && calls < 10000);
	setitimer(ITIMER_REAL, &off, NULL);

	ASSERT_EQ(r, 0);
	ASSERT(interrupted > 0, "no call was interrupted with progress (%llu calls)",
	       (unsigned long long)calls);
	ASSERT_EQ(args.size, 0);
	ASSERT_EQ(total, nr_slots * 256);
	ASSERT_EQ(vm_page_counts(vm).pages_2m, 0);
}

static void invalid_arguments(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 4 * SZ_2M);
	const struct kvm_split_huge_pages valid = {
		.gpa = t.gpa, .size = t.size, .page_size = SZ_4K,
	};
	struct {
		const char *what;
		struct kvm_split_huge_pages args;
	} bad[] = {
		{ "misaligned gpa", valid }, { "misaligned size", valid },
		{ "zero size", valid }, { "overflowing range", valid },
		{ "page size 0", valid }, { "page size 1", valid },
		{ "page size 8K", valid }, { "page size 1G", valid },
		{ "page sizes 4K|2M", valid }, { "page size 4K + 4G", valid },
		{ "unknown flag", valid }, { "HOLD|RELEASE", valid },
		{ "HOLD|QUERY", valid }, { "RELEASE|QUERY", valid },
		{ "RELEASE with a page size", valid },
		{ "QUERY without a page size", valid },
		{ "reserved[0]", valid }, { "reserved[1]", valid },
		{ "reserved[2]", valid },
	};
	struct kvm_split_huge_pages ok = valid;

	bad[0].args.gpa += 512;
	bad[1].args.size -= 512;
	bad[2].args.size = 0;
	bad[3].args.gpa = -SZ_2M;
	bad[3].args.size = 2 * SZ_2M;
	bad[4].args.page_size = 0;
	bad[5].args.page_size = 1;
	bad[6].args.page_size = 2 * SZ_4K;
	bad[7].args.page_size = SZ_1G;
	bad[8].args.page_size = SZ_4K | SZ_2M;
	/* The same low 32 bits as 4K, for a kernel that would truncate. */
	bad[9].args.page_size = SZ_4K + (1ULL << 32);
	bad[10].args.flags = 1ULL << 3;
	bad[11].args.flags = HOLD | RELEASE;
	bad[12].args.flags = HOLD | QUERY;
	bad[13].args.flags = RELEASE | QUERY;
	bad[14].args.flags = RELEASE;
	bad[15].args.flags = QUERY;
	bad[15].args.page_size = 0;
	for (int i = 0; i < 3; i++)
		bad[16 + i].args.reserved[i] = 1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = split_once(t.vm->fd, &bad[i].args);

		ASSERT(r == -EINVAL, "%s: got %s", bad[i].what, strerror(-r));
	}
	/* Nothing was split by the refused calls; a valid one still works. */
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 4);
	ASSERT_EQ(split_once(t.vm->fd, &ok), 0);
	ASSERT_EQ(ok.nr_split, 4);
}

/*
 * Without a hold KVM maps a re-faulted range huge again; with HOLD it stays
 * 4K; after RELEASE the huge mappings come back.
 */
static void hold_keeps_refaults_small(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);
	struct kvm_split_huge_pages release = {
		.gpa = t.gpa, .size = t.size, .flags = RELEASE,
	};

	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 32);
	zap_and_refault(&t);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 32);	/* no hold: huge again */

	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, HOLD), 32);
	zap_and_refault(&t);
	print_page_counts("held, after zap + refault", vm_page_counts(t.vm));
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, 32 * PAGES_PER_2M);

	ASSERT_EQ(split_once(t.vm->fd, &release), 0);
	ASSERT_EQ(release.size, 0);
	ASSERT_EQ(release.nr_split, 0);
	vcpu_prefault(t.vcpu, t.gpa, t.size);
	print_page_counts("released, after refault", vm_page_counts(t.vm));
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 32);
}

/*
 * A 2M hold lets 2M mappings back but not 1G ones.  After a split to 4K,
 * KVM_PRE_FAULT_MEMORY replaces the 4K tables with the largest mapping the
 * fault path allows: 1G without the hold (the control), 2M under it.
 */
static void hold_at_2m_keeps_1g_away(void)
{
	const uint64_t gpa = 4 * SZ_1G;
	struct vm *vm = vm_create();
	struct vcpu *vcpu = vcpu_create(vm, 0);
	struct page_counts c;

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, gpa, SZ_1G, alloc_hugetlb_1g(SZ_1G));
	vcpu_prefault(vcpu, gpa, SZ_1G);
	ASSERT_EQ(split_range(vm->fd, gpa, SZ_1G, SZ_2M, 0), 1);
	ASSERT_EQ(split_range(vm->fd, gpa, SZ_1G, SZ_4K, 0), 512);
	vcpu_prefault(vcpu, gpa, SZ_1G);
	ASSERT_EQ(vm_page_counts(vm).pages_1g, 1);

	ASSERT_EQ(split_range(vm->fd, gpa, SZ_1G, SZ_2M, HOLD), 1);
	ASSERT_EQ(split_range(vm->fd, gpa, SZ_1G, SZ_4K, 0), 512);
	vcpu_prefault(vcpu, gpa, SZ_1G);
	c = vm_page_counts(vm);
	print_page_counts("held at 2M, after refault", c);
	ASSERT_EQ(c.pages_1g, 0);
	ASSERT_EQ(c.pages_2m, 512);
}

static uint64_t pages_held(struct vm *vm)
{
	return stats_read(vm->stats_fd, "pages_held");
}

/*
 * The hold survives the memslot update that turns dirty logging on; turning
 * dirty logging off drops it and KVM's recovery brings huge mappings back.
 */
static void hold_dropped_by_dirty_log_disable(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);

	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, HOLD), 32);
	vm_set_memslot(t.vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES, t.gpa,
		       t.size, t.mem);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, 32 * PAGES_PER_2M);
	vcpu_prefault(t.vcpu, t.gpa, t.size);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);

	vm_set_memslot(t.vm, FIRST_TEST_SLOT, 0, t.gpa, t.size, t.mem);
	ASSERT_EQ(pages_held(t.vm), 0);
	vcpu_prefault(t.vcpu, t.gpa, t.size);
	print_page_counts("dirty logging off, after refault", vm_page_counts(t.vm));
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 32);
}

static void release(struct vm *vm, uint64_t gpa, uint64_t size)
{
	struct kvm_split_huge_pages args = {
		.gpa = gpa, .size = size, .flags = RELEASE,
	};

	ASSERT_EQ(split_once(vm->fd, &args), 0);
	ASSERT_EQ(args.size, 0);
	ASSERT_EQ(args.nr_split, 0);
}

/*
 * RELEASE ends the holds on exactly its range: releasing one 2M region of
 * a held memslot brings that region back huge and nothing else, while the
 * rest of the memslot, the 1G region around it, and a hold in the next 1G
 * region stay; pages_held follows.
 */
static void release_is_exact(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);
	const uint64_t other_gpa = 2 * SZ_1G, other_size = 4 * SZ_2M;
	struct page_counts c;

	vm_set_memslot(t.vm, FIRST_TEST_SLOT + 1, 0, other_gpa, other_size,
		       alloc_thp(other_size));
	vcpu_prefault(t.vcpu, other_gpa, other_size);
	ASSERT_EQ(pages_held(t.vm), 0);
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, other_gpa + other_size - t.gpa,
			      SZ_4K, HOLD), 36);
	ASSERT_EQ(pages_held(t.vm), 36 * PAGES_PER_2M);

	release(t.vm, t.gpa + 16 * SZ_2M, SZ_2M);
	ASSERT_EQ(pages_held(t.vm), 35 * PAGES_PER_2M);
	zap_and_refault(&t);
	vcpu_prefault(t.vcpu, other_gpa, other_size);
	c = vm_page_counts(t.vm);
	print_page_counts("one 2M region released, after refault", c);
	ASSERT_EQ(c.pages_2m, 1);
	ASSERT_EQ(c.pages_4k, 35 * PAGES_PER_2M);

	/* The rest, over the hole between the memslots too. */
	release(t.vm, t.gpa, other_gpa + other_size - t.gpa);
	ASSERT_EQ(pages_held(t.vm), 0);
	zap_and_refault(&t);
	vcpu_prefault(t.vcpu, other_gpa, other_size);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 36);
}

/*
 * Two holds in one 2M region, each on half of it: releasing one half
 * leaves the region held by the other, which a RELEASE rounded out to the
 * region would drop.
 */
static void release_keeps_neighbour_hold(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 4 * SZ_2M);

	split_range(t.vm->fd, t.gpa, HALF_2M, SZ_4K, HOLD);
	split_range(t.vm->fd, t.gpa + HALF_2M, HALF_2M, SZ_4K, HOLD);
	ASSERT_EQ(pages_held(t.vm), PAGES_PER_2M);

	release(t.vm, t.gpa, HALF_2M);
	ASSERT_EQ(pages_held(t.vm), PAGES_PER_2M / 2);
	zap_and_refault(&t);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 3);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, PAGES_PER_2M);

	release(t.vm, t.gpa + HALF_2M, HALF_2M);
	ASSERT_EQ(pages_held(t.vm), 0);
	zap_and_refault(&t);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 4);
}

/*
 * The huge pages come back only where a hold ended: 4K mappings elsewhere,
 * which nothing holds but nothing collapsed either, are not zapped.
 */
static void release_zaps_only_its_range(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);
	struct page_counts c;

	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 32);
	split_range(t.vm->fd, t.gpa, 2 * SZ_2M, SZ_4K, HOLD);
	release(t.vm, t.gpa, SZ_2M);
	c = vm_page_counts(t.vm);
	print_page_counts("one of two held 2M regions released", c);
	/* Only the released region's 512 mappings were zapped. */
	ASSERT_EQ(c.pages_4k, 31 * PAGES_PER_2M);
	vcpu_prefault(t.vcpu, t.gpa, SZ_2M);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 1);
}

/* One QUERY: the first range held at @page_size in [@gpa, @gpa + @size). */
static struct kvm_split_huge_pages query(struct vm *vm, uint64_t gpa,
					 uint64_t size, uint64_t page_size)
{
	struct kvm_split_huge_pages args = {
		.gpa = gpa, .size = size, .page_size = page_size, .flags = QUERY,
	};

	ASSERT_EQ(split_once(vm->fd, &args), 0);
	ASSERT_EQ(args.nr_split, 0);
	return args;
}

#define ASSERT_RANGE(q, start, len)					\
	do {								\
		ASSERT_EQ((q).gpa, (uint64_t)(start));			\
		ASSERT_EQ((q).size, (uint64_t)(len));			\
	} while (0)

/*
 * QUERY reads the holds back, per target size, one range per call and
 * clipped to the range asked about, and changes nothing: two memslots, one
 * held at 4K (its middle 2M region released again), one at 2M; a range
 * held over the hole between them; a window that ends inside a range.
 */
static void query_reads_back_holds(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 8 * SZ_2M);
	const uint64_t other_gpa = 2 * SZ_1G, other_size = 4 * SZ_2M;
	const uint64_t end = other_gpa + other_size;
	struct page_counts before, after;
	struct kvm_split_huge_pages q;

	vm_set_memslot(t.vm, FIRST_TEST_SLOT + 1, 0, other_gpa, other_size,
		       alloc_thp(other_size));
	vcpu_prefault(t.vcpu, other_gpa, other_size);

	/* Nothing held yet: the whole range is consumed, size 0. */
	ASSERT_RANGE(query(t.vm, t.gpa, end - t.gpa, SZ_4K), end, 0);

	split_range(t.vm->fd, t.gpa, t.size, SZ_4K, HOLD);
	split_range(t.vm->fd, other_gpa, other_size, SZ_2M, HOLD);
	release(t.vm, t.gpa + 3 * SZ_2M, SZ_2M);
	before = vm_page_counts(t.vm);

	/* At 4K: the first memslot around the released region... */
	q = query(t.vm, 0, end, SZ_4K);
	ASSERT_RANGE(q, t.gpa, 3 * SZ_2M);
	q = query(t.vm, q.gpa + q.size, end - (q.gpa + q.size), SZ_4K);
	ASSERT_RANGE(q, t.gpa + 4 * SZ_2M, 4 * SZ_2M);
	/* ...and nothing after it: the other memslot is held at 2M. */
	q = query(t.vm, q.gpa + q.size, end - (q.gpa + q.size), SZ_4K);
	ASSERT_RANGE(q, end, 0);
	/* At 2M, only the other memslot, and clipped to the window. */
	ASSERT_RANGE(query(t.vm, 0, end, SZ_2M), other_gpa, other_size);
	ASSERT_RANGE(query(t.vm, 0, other_gpa + SZ_2M, SZ_2M), other_gpa, SZ_2M);
	ASSERT_RANGE(query(t.vm, other_gpa + SZ_2M, SZ_2M, SZ_2M),
		     other_gpa + SZ_2M, SZ_2M);
	/* A window starting inside a held range. */
	ASSERT_RANGE(query(t.vm, t.gpa + SZ_2M, SZ_1G, SZ_4K),
		     t.gpa + SZ_2M, 2 * SZ_2M);

	/* Reading changed nothing. */
	after = vm_page_counts(t.vm);
	ASSERT_EQ(after.pages_4k, before.pages_4k);
	ASSERT_EQ(after.pages_2m, before.pages_2m);
	ASSERT_EQ(pages_held(t.vm), 11 * PAGES_PER_2M);

	/* A release over both memslots and the hole ends every hold. */
	release(t.vm, 0, end);
	ASSERT_RANGE(query(t.vm, 0, end, SZ_4K), end, 0);
	ASSERT_RANGE(query(t.vm, 0, end, SZ_2M), end, 0);
	ASSERT_EQ(pages_held(t.vm), 0);
}

/*
 * A memslot that is dirty logging is left to dirty logging: with
 * initially-set its huge mappings stay until KVM_CLEAR_DIRTY_LOG splits
 * them, and KVM_SPLIT_HUGE_PAGES does not split them behind its back.
 */
static void dirty_logging_slot_not_split(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);

	vm_enable_manual_dirty_log(t.vm, true);
	vm_set_memslot(t.vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES, t.gpa,
		       t.size, t.mem);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 32);
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 32);

	/* The control: with dirty logging off, the same call splits. */
	vm_set_memslot(t.vm, FIRST_TEST_SLOT, 0, t.gpa, t.size, t.mem);
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 32);
}

/*
 * Read-only memslots too: turning dirty logging off drops the hold and
 * zaps the split mappings for recovery, though KVM has nothing else to do
 * for such a memslot then.
 */
static void hold_dropped_on_readonly_slot(void)
{
	const uint64_t size = 32 * SZ_2M;
	struct vm *vm = vm_create();
	struct vcpu *vcpu = vcpu_create(vm, 0);
	void *mem = alloc_thp(size);

	vm_set_memslot(vm, FIRST_TEST_SLOT, KVM_MEM_READONLY, SLOT_GPA, size, mem);
	vcpu_prefault(vcpu, SLOT_GPA, size);
	ASSERT_EQ(vm_page_counts(vm).pages_2m, 32);
	ASSERT_EQ(split_range(vm->fd, SLOT_GPA, size, SZ_4K, HOLD), 32);

	vm_set_memslot(vm, FIRST_TEST_SLOT,
		       KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES, SLOT_GPA,
		       size, mem);
	vm_set_memslot(vm, FIRST_TEST_SLOT, KVM_MEM_READONLY, SLOT_GPA, size, mem);
	print_page_counts("dirty logging off", vm_page_counts(vm));
	ASSERT_EQ(vm_page_counts(vm).pages_4k, 0);
	vcpu_prefault(vcpu, SLOT_GPA, size);
	ASSERT_EQ(vm_page_counts(vm).pages_2m, 32);
}

/* ---- a process that is not the VM's owner --------------------------------- */

static void foreign_split(int vm_fd)
{
	int stats_fd = ioctl(vm_fd, KVM_GET_STATS_FD, NULL);
	struct kvm_split_huge_pages args = {
		.gpa = SLOT_GPA, .size = 32 * SZ_2M, .page_size = SZ_4K,
	};

	ASSERT(stats_fd >= 0, "foreign KVM_GET_STATS_FD: %m");
	ASSERT_EQ(stats_page_counts(stats_fd).pages_2m, 32);
	ASSERT(!ioctl(vm_fd, KVM_SPLIT_HUGE_PAGES, &args), "foreign split: %m");
	ASSERT_EQ(args.nr_split, 32);
	ASSERT_EQ(stats_page_counts(stats_fd).pages_2m, 0);

	/* Exactly those two ioctls are exempt. */
	ASSERT(ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0 &&
	       errno == EIO, "foreign KVM_CHECK_EXTENSION: %m");
	ASSERT(ioctl(vm_fd, KVM_CREATE_VCPU, 1) < 0 && errno == EIO,
	       "foreign KVM_CREATE_VCPU: %m");
}

static void foreign_caller_splits(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);

	run_as_foreign_process(t.vm, foreign_split);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, 32 * PAGES_PER_2M);
}

/*
 * Page tables that a foreign caller's split allocates are charged to the VM
 * owner's memory cgroup: they show up in the owner's sec_pagetables, not the
 * helper's.  A 1G page split to 4K allocates 1 + 512 page tables, enough to
 * get past memcg's batched statistics.
 */
#define CGROUP_ROOT	"/sys/fs/cgroup"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ASSERT(f, "open %s: %m", path);
	ASSERT(fputs(text, f) >= 0 && fclose(f) == 0, "write %s: %m", path);
}

/* The guest's init made the cgroups, with the memory controller on. */
static void join_cgroup(const char *name)
{
	char path[128], pid[32];

	snprintf(path, sizeof(path), CGROUP_ROOT "/%s/cgroup.procs", name);
	snprintf(pid, sizeof(pid), "%d", getpid());
	write_file(path, pid);
}

static uint64_t sec_pagetables_of(const char *cgroup)
{
	char path[128], line[256];
	unsigned long long bytes;
	FILE *f;

	snprintf(path, sizeof(path), CGROUP_ROOT "/%s/memory.stat", cgroup);
	f = fopen(path, "r");
	ASSERT(f, "open %s: %m", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "sec_pagetables %llu", &bytes) == 1) {
			fclose(f);
			return bytes;
		}
	ktest_fail(__FILE__, __LINE__, "no sec_pagetables in %s", path);
}

static void foreign_split_1g(int vm_fd)
{
	uint64_t before;

	join_cgroup("helper");
	before = sec_pagetables_of("helper");
	ASSERT_EQ(split_range(vm_fd, 4 * SZ_1G, SZ_1G, SZ_4K, 0), 1 + 512);
	ASSERT_EQ(sec_pagetables_of("helper"), before);
}

static void foreign_split_charged_to_owner(void)
{
	struct vm *vm;
	struct vcpu *vcpu;
	uint64_t before, after;

	join_cgroup("owner");
	vm = vm_create();
	vcpu = vcpu_create(vm, 0);
	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, 4 * SZ_1G, SZ_1G, alloc_hugetlb_1g(SZ_1G));
	vcpu_prefault(vcpu, 4 * SZ_1G, SZ_1G);
	ASSERT_EQ(vm_page_counts(vm).pages_1g, 1);

	before = sec_pagetables_of("owner");
	run_as_foreign_process(vm, foreign_split_1g);
	after = sec_pagetables_of("owner");
	ktest_log("owner's sec_pagetables: %llu -> %llu bytes",
		  (unsigned long long)before, (unsigned long long)after);
	ASSERT(after - before >= 512 * SZ_4K, "owner charged %llu bytes",
	       (unsigned long long)(after - before));
}

/* ---- races ------------------------------------------------------------------ */

struct writer {
	pthread_t thread;
	struct vcpu *vcpu;
	atomic_bool *stop;
	atomic_ulong passes;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(w->stop)) {
		ASSERT_EQ(vcpu_run_pass(w->vcpu), 0);
		atomic_fetch_add(&w->passes, 1);
	}
	return NULL;
}

static void wait_for_passes(struct writer *w, unsigned long n)
{
	while (atomic_load(&w->passes) < n)
		usleep(1000);
}

/*
 * Two vCPUs rewrite their halves of the slot all the time while it is split
 * under them: nothing is lost (every page counts every pass) and nothing is
 * left huge.
 */
static void split_while_vcpus_write(void)
{
	const uint64_t size = 64 * SZ_2M, half = size / 2;
	struct thp_vm t = thp_vm_create(SLOT_GPA, size);
	atomic_bool stop = false;
	struct writer w[2];
	uint32_t *mem = t.mem;

	for (int i = 0; i < 2; i++) {
		w[i] = (struct writer) {
			.vcpu = vcpu_create_writer(t.vm, 1 + i, t.gpa + i * half, half),
			.stop = &stop,
		};
		pthread_create(&w[i].thread, NULL, writer_thread, &w[i]);
	}
	wait_for_passes(&w[0], 1);
	wait_for_passes(&w[1], 1);
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, size, SZ_4K, 0), 64);
	wait_for_passes(&w[0], atomic_load(&w[0].passes) + 2);
	wait_for_passes(&w[1], atomic_load(&w[1].passes) + 2);
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i].thread, NULL);

	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);
	for (uint64_t off = 0; off < size; off += SZ_4K) {
		unsigned long passes = atomic_load(&w[off / half].passes);

		ASSERT(mem[off / 4] == passes, "page +0x%llx: %u writes, %lu passes",
		       (unsigned long long)off, mem[off / 4], passes);
	}
	ktest_log("%lu and %lu passes", atomic_load(&w[0].passes),
		  atomic_load(&w[1].passes));
}

struct churn {
	struct thp_vm *t;
	struct vcpu *writer;
	atomic_bool *stop;
	atomic_ulong rounds;
};

/*
 * Delete and re-add the memslot, and map it huge again, over and over.  The
 * vCPU maps it by running, not with KVM_PRE_FAULT_MEMORY: after a memslot
 * deletion 6.12's pre-fault spins on the obsolete root until KVM_RUN reloads
 * it (fixed upstream by "KVM: x86/mmu: Return -EAGAIN if userspace
 * deleted/moved memslot during prefault").
 */
static void *memslot_churn_thread(void *arg)
{
	struct churn *c = arg;

	while (!atomic_load(c->stop)) {
		vm_delete_memslot(c->t->vm, FIRST_TEST_SLOT);
		vm_set_memslot(c->t->vm, FIRST_TEST_SLOT, 0, c->t->gpa,
			       c->t->size, c->t->mem);
		ASSERT_EQ(vcpu_run_pass(c->writer), 0);
		c->rounds++;
	}
	return NULL;
}

static void split_while_memslot_churns(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 32 * SZ_2M);
	atomic_bool stop = false;
	struct churn c = {
		.t = &t, .stop = &stop,
		.writer = vcpu_create_writer(t.vm, 1, t.gpa, t.size),
	};
	pthread_t thread;
	uint64_t splits = 0;

	pthread_create(&thread, NULL, memslot_churn_thread, &c);
	while (c.rounds < 20)
		splits += split_range(t.vm->fd, t.gpa - SZ_2M, t.size + 2 * SZ_2M,
				      SZ_4K, 0);
	atomic_store(&stop, true);
	pthread_join(thread, NULL);
	ktest_log("%lu memslot rounds, %llu splits", atomic_load(&c.rounds),
		  (unsigned long long)splits);

	/* The final state is consistent: the slot maps and splits normally. */
	ASSERT_EQ(vcpu_run_pass(c.writer), 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 32);
	ASSERT_EQ(split_range(t.vm->fd, t.gpa, t.size, SZ_4K, 0), 32);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);
}

struct splitter {
	pthread_t thread;
	int vm_fd;
	uint64_t gpa, size, nr_split;
	pthread_barrier_t *start;
};

static void *splitter_thread(void *arg)
{
	struct splitter *s = arg;

	pthread_barrier_wait(s->start);
	s->nr_split = split_range(s->vm_fd, s->gpa, s->size, SZ_4K, 0);
	return NULL;
}

/* Two threads split the same range at once: each mapping is split once. */
static void two_splits_at_once(void)
{
	struct thp_vm t = thp_vm_create(SLOT_GPA, 256 * SZ_2M);
	pthread_barrier_t start;
	struct splitter s[2];

	pthread_barrier_init(&start, NULL, 2);
	for (int i = 0; i < 2; i++) {
		s[i] = (struct splitter) {
			.vm_fd = t.vm->fd, .gpa = t.gpa, .size = t.size,
			.start = &start,
		};
		pthread_create(&s[i].thread, NULL, splitter_thread, &s[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(s[i].thread, NULL);
	ktest_log("nr_split %llu + %llu", (unsigned long long)s[0].nr_split,
		  (unsigned long long)s[1].nr_split);
	ASSERT_EQ(s[0].nr_split + s[1].nr_split, 256);
	ASSERT_EQ(vm_page_counts(t.vm).pages_2m, 0);
	ASSERT_EQ(vm_page_counts(t.vm).pages_4k, 256 * PAGES_PER_2M);
}

/* ---- without the TDP MMU (run with npt=0 or tdp_mmu=N) --------------------- */

static void without_tdp_mmu(void)
{
	struct vm *vm = vm_create();
	struct kvm_split_huge_pages args = {
		.gpa = SLOT_GPA, .size = 4 * SZ_2M, .page_size = SZ_4K,
	};

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, SLOT_GPA, 4 * SZ_2M,
		       alloc_thp(4 * SZ_2M));
	ASSERT_EQ(ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES), 0);
	ASSERT_EQ(ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES), 0);
	ASSERT_EQ(split_once(vm->fd, &args), -EOPNOTSUPP);
}

/* ---- a VM with private memory (modules built with KVM_SW_PROTECTED_VM) --- */

static void private_memory_vm_refused(void)
{
	int kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm_fd, types;
	struct kvm_create_guest_memfd gmem = { .size = SZ_2M };
	struct kvm_userspace_memory_region2 region = {
		.slot = FIRST_TEST_SLOT, .flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = SLOT_GPA, .memory_size = SZ_2M,
	};
	const uint64_t flags[] = { 0, HOLD, RELEASE, QUERY };

	ASSERT(kvm_fd >= 0, "open /dev/kvm: %m");
	types = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
	ASSERT(types > 0 && (types & (1 << KVM_X86_SW_PROTECTED_VM)),
	       "these modules have no KVM_X86_SW_PROTECTED_VM (built without -DCONFIG_KVM_SW_PROTECTED_VM=1?)");
	vm_fd = CHECKED_IOCTL(kvm_fd, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	/* Private memory in the range, as such a VM has. */
	region.userspace_addr = (uintptr_t)alloc_thp(SZ_2M);
	region.guest_memfd = CHECKED_IOCTL(vm_fd, KVM_CREATE_GUEST_MEMFD, &gmem);
	CHECKED_IOCTL(vm_fd, KVM_SET_USER_MEMORY_REGION2, &region);

	/* Other VMs still can. */
	ASSERT_EQ(ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES), SIZES);
	ASSERT_EQ(ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_HUGE_PAGES), 0);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		struct kvm_split_huge_pages args = {
			.gpa = SLOT_GPA, .size = SZ_2M, .flags = flags[i],
			.page_size = flags[i] == RELEASE ? 0 : SZ_4K,
		};

		ASSERT_EQ(split_once(vm_fd, &args), -EOPNOTSUPP);
		/* Nothing done: the range is reported as it was given. */
		ASSERT_EQ(args.gpa, SLOT_GPA);
		ASSERT_EQ(args.size, SZ_2M);
	}
	close(region.guest_memfd);
	close(vm_fd);
	close(kvm_fd);
}

static const struct ktest_case cases[] = {
	{ "capability_reports_sizes", capability_reports_sizes },
	{ "split_2m_to_4k_whole_slot", split_2m_to_4k_whole_slot },
	{ "split_1g_to_2m_to_4k", split_1g_to_2m_to_4k },
	{ "split_partial_range", split_partial_range },
	{ "split_across_memslots_and_holes", split_across_memslots_and_holes },
	{ "split_resumes_after_signal", split_resumes_after_signal },
	{ "invalid_arguments", invalid_arguments },
	{ "hold_keeps_refaults_small", hold_keeps_refaults_small },
	{ "hold_at_2m_keeps_1g_away", hold_at_2m_keeps_1g_away },
	{ "hold_dropped_by_dirty_log_disable", hold_dropped_by_dirty_log_disable },
	{ "release_is_exact", release_is_exact },
	{ "release_keeps_neighbour_hold", release_keeps_neighbour_hold },
	{ "release_zaps_only_its_range", release_zaps_only_its_range },
	{ "query_reads_back_holds", query_reads_back_holds },
	{ "dirty_logging_slot_not_split", dirty_logging_slot_not_split },
	{ "hold_dropped_on_readonly_slot", hold_dropped_on_readonly_slot },
	{ "foreign_caller_splits", foreign_caller_splits },
	{ "foreign_split_charged_to_owner", foreign_split_charged_to_owner },
	{ "split_while_vcpus_write", split_while_vcpus_write },
	{ "split_while_memslot_churns", split_while_memslot_churns },
	{ "two_splits_at_once", two_splits_at_once },
};

/*
 * Not part of the default list: run only when the TDP MMU is off, and only
 * with modules that support KVM_X86_SW_PROTECTED_VM (Debian's do not).
 */
static const struct ktest_case no_tdp_cases[] = {
	{ "without_tdp_mmu", without_tdp_mmu },
};
static const struct ktest_case private_memory_cases[] = {
	{ "private_memory_vm_refused", private_memory_vm_refused },
};

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "without_tdp_mmu"))
		return ktest_main("split_tests", no_tdp_cases, 1, argc, argv);
	if (argc == 2 && !strcmp(argv[1], "private_memory_vm_refused"))
		return ktest_main("split_tests", private_memory_cases, 1, argc, argv);
	return ktest_main("split_tests", cases, sizeof(cases) / sizeof(cases[0]),
			  argc, argv);
}
