/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The VM owner for the helper checks: stands in for QEMU, so that the host
 * helper has to take the VM fd out of another process with pidfd_getfd the
 * way it does on a real host.  Its 256 MiB of THP-backed memory is faulted
 * in first, so KVM maps it with 2M pages.
 *
 * Protocol on stdin/stdout (the guest driver talks to it over pipes):
 *   start -> "HOLDER pid=<pid> vm_fd=<fd>"
 *   "refault" -> zap the memory (MADV_DONTNEED zaps the SPTEs through the
 *                MMU notifier), repopulate it with THPs and fault it in
 *                again at the largest level KVM allows -> "REFAULTED"
 *   EOF -> exit
 * The refault is how a hold becomes visible: while held, KVM must map the
 * range at 4K even though 2M pages back it.
 */
#include "ktest.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TEST_GPA	SZ_1G
#define TEST_SIZE	(256ULL << 20)

int main(void)
{
	struct vm *vm = vm_create();
	uint8_t *mem = alloc_thp(TEST_SIZE);
	struct vcpu *vcpu;
	char line[64];

	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, TEST_GPA, TEST_SIZE, mem);
	vcpu = vcpu_create(vm, 0);
	vcpu_prefault(vcpu, TEST_GPA, TEST_SIZE);
	printf("HOLDER pid=%d vm_fd=%d\n", getpid(), vm->fd);
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		if (strcmp(line, "refault\n"))
			continue;
		ASSERT(!madvise(mem, TEST_SIZE, MADV_DONTNEED), "MADV_DONTNEED: %m");
		memset(mem, 0, TEST_SIZE);
		vcpu_prefault(vcpu, TEST_GPA, TEST_SIZE);
		printf("REFAULTED\n");
		fflush(stdout);
	}
	return 0;
}
