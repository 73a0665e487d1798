// SPDX-License-Identifier: GPL-2.0
/*
 * What the kernel tier relies on before any patch: KVM in the TCG guest maps
 * THP and hugetlb 1G memory huge (seen in the VM stats fd), and a process
 * that is not the VM's owner cannot use the VM fd.  The last case is run
 * against the stock modules only: the patch exempts KVM_GET_STATS_FD and
 * KVM_SPLIT_HUGE_PAGES (which the stock modules refuse with -EIO before they
 * could find the ioctl unknown).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ktest.h"

#define THP_SLOT_GPA	SZ_1G
#define THP_SLOT_SIZE	(128 * SZ_2M)
#define HUGETLB_GPA	(4 * SZ_1G)

/* A vCPU touching every page once faults the whole slot in as 2M pages. */
static void thp_vcpu_fault_in(void)
{
	struct vm *vm = vm_create();
	uint32_t *mem = alloc_thp(THP_SLOT_SIZE);
	struct page_counts before, after;
	struct vcpu *vcpu;

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, THP_SLOT_GPA, THP_SLOT_SIZE, mem);
	vcpu = vcpu_create_writer(vm, 0, THP_SLOT_GPA, THP_SLOT_SIZE);
	before = vm_page_counts(vm);
	ASSERT_EQ(vcpu_run_pass(vcpu), 0);
	after = vm_page_counts(vm);
	print_page_counts("before", before);
	print_page_counts("after one pass", after);

	ASSERT_EQ(after.pages_2m - before.pages_2m, THP_SLOT_SIZE / SZ_2M);
	for (uint64_t off = 0; off < THP_SLOT_SIZE; off += SZ_4K)
		ASSERT(mem[off / 4] == 1, "page at +0x%llx holds %u",
		       (unsigned long long)off, mem[off / 4]);
}

/* KVM_PRE_FAULT_MEMORY maps THP memory huge too; the split tests use it. */
static void thp_prefault(void)
{
	struct vm *vm = vm_create();
	void *mem = alloc_thp(THP_SLOT_SIZE);
	struct vcpu *vcpu;
	struct page_counts c;

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, THP_SLOT_GPA, THP_SLOT_SIZE, mem);
	vcpu = vcpu_create(vm, 0);
	vcpu_prefault(vcpu, THP_SLOT_GPA, THP_SLOT_SIZE);
	c = vm_page_counts(vm);
	print_page_counts("after prefault", c);
	ASSERT_EQ(c.pages_2m, THP_SLOT_SIZE / SZ_2M);
}

static void hugetlb_1g_prefault(void)
{
	struct vm *vm = vm_create();
	void *mem = alloc_hugetlb_1g(SZ_1G);
	struct vcpu *vcpu;
	struct page_counts c;

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, HUGETLB_GPA, SZ_1G, mem);
	vcpu = vcpu_create(vm, 0);
	vcpu_prefault(vcpu, HUGETLB_GPA, SZ_1G);
	c = vm_page_counts(vm);
	print_page_counts("after prefault", c);
	ASSERT_EQ(c.pages_1g, 1);
}

static void foreign_ioctls_get_eio(int vm_fd)
{
	struct kvm_split_huge_pages args = {
		.gpa = THP_SLOT_GPA, .size = SZ_2M,
		.page_size = SZ_4K,
	};

	ASSERT(ioctl(vm_fd, KVM_SPLIT_HUGE_PAGES, &args) < 0 && errno == EIO,
	       "KVM_SPLIT_HUGE_PAGES from a foreign mm: %m");
	ASSERT(ioctl(vm_fd, KVM_GET_STATS_FD, NULL) < 0 && errno == EIO,
	       "KVM_GET_STATS_FD from a foreign mm: %m");
	ASSERT(ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0 &&
	       errno == EIO, "KVM_CHECK_EXTENSION from a foreign mm: %m");
}

static void foreign_caller_gets_eio(void)
{
	struct vm *vm = vm_create();

	/* The owner itself can do both. */
	ASSERT(stats_fd_of(vm->fd) >= 0, "owner's KVM_GET_STATS_FD");
	ASSERT(ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) > 0,
	       "owner's KVM_CHECK_EXTENSION: %m");
	run_as_foreign_process(vm, foreign_ioctls_get_eio);
}

static const struct ktest_case cases[] = {
	{ "thp_vcpu_fault_in", thp_vcpu_fault_in },
	{ "thp_prefault", thp_prefault },
	{ "hugetlb_1g_prefault", hugetlb_1g_prefault },
	{ "foreign_caller_gets_eio", foreign_caller_gets_eio },
};

int main(int argc, char **argv)
{
	return ktest_main("vm_basics", cases, sizeof(cases) / sizeof(cases[0]),
			  argc, argv);
}
