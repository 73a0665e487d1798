// SPDX-License-Identifier: GPL-2.0
/*
 * The start of a live migration as QEMU drives it, with and without a
 * KVM_SPLIT_HUGE_PAGES pre-split (HOLD) done beforehand, on the same amount
 * of THP-backed guest memory while vCPUs keep writing it:
 *
 *   manual-protect + initially-set (QEMU's default): enable dirty logging,
 *   then the first full pass of GET_DIRTY_LOG + CLEAR_DIRTY_LOG in chunks;
 *   plain dirty logging (eager split inside the enable): enable, then one
 *   GET_DIRTY_LOG.
 *
 * The guest measures itself: between two page writes it reads the TSC and
 * keeps the longest gap and a log2 histogram of the gaps, so vCPU stalls on
 * mmu_lock show up as long gaps.  Prints one table; a benchmark, no asserts
 * on timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ktest.h"

#define NR_VCPUS		2
#define SLOT_GPA		SZ_1G
/* QEMU clears the dirty log in 1 GiB chunks (clear_bmap_shift 18); smaller
 * chunks give the vCPUs more chances to run between them. */
#define CLEAR_CHUNK_PAGES	(64 * 1024 * 1024 / SZ_4K)

#define TIMED_LOOP_GPA		0x4000
#define GAP_STATS_GPA(i)	(0x8000 + (i) * 0x400)

/* Per-vCPU, in the code slot, written by the guest. */
struct gap_stats {
	uint32_t longest;	/* TSC cycles */
	uint32_t log2_hist[32];
};

/*
 * esi = first byte, edi = end, ecx = stride, esp = struct gap_stats.
 * TSC deltas are 32-bit: a gap above 2^32 cycles (~1 s) would wrap.
 */
extern const uint8_t guest_timed_write_loop[], guest_timed_write_loop_end[];
asm(".pushsection .rodata\n"
    ".code32\n"
    "guest_timed_write_loop:\n"
    "1:	mov %esi, %ebx\n"
    "	rdtsc\n"
    "	mov %eax, %ebp\n"
    "2:	addl $1, (%ebx)\n"
    "	rdtsc\n"
    "	mov %eax, %edx\n"
    "	sub %ebp, %eax\n"	/* gap since the previous write */
    "	mov %edx, %ebp\n"
    "	cmp (%esp), %eax\n"
    "	jbe 3f\n"
    "	mov %eax, (%esp)\n"
    "3:	or $1, %eax\n"
    "	bsr %eax, %eax\n"
    "	incl 4(%esp,%eax,4)\n"
    "	add %ecx, %ebx\n"
    "	cmp %edi, %ebx\n"
    "	jb 2b\n"
    "	out %al, $0x10\n"	/* PASS_DONE_PORT */
    "	jmp 1b\n"
    "guest_timed_write_loop_end:\n"
    ".code64\n"
    ".popsection\n");

struct mode {
	const char *name;
	bool initially_set;	/* manual-protect + initially-set, as QEMU */
	bool presplit;
};

struct result {
	double presplit_wall_s, presplit_cpu_s;
	uint64_t presplit_nr;
	double enable_s, enable_cpu_s, first_pass_s;
	uint64_t huge_split_in_path;
	uint32_t longest_gap, p99_gap;
};

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
	return now_ns() / 1e9;
}

struct writer {
	pthread_t thread;
	struct vcpu *vcpu;
	atomic_bool *stop;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(w->stop))
		ASSERT_EQ(vcpu_run_pass(w->vcpu), 0);
	return NULL;
}

static struct vcpu *timed_writer(struct vm *vm, int id, uint64_t gpa,
				 uint64_t size)
{
	struct vcpu *vcpu = vcpu_create(vm, id);
	struct kvm_regs regs = {
		.rip = TIMED_LOOP_GPA, .rflags = 2, .rsp = GAP_STATS_GPA(id),
		.rsi = gpa, .rdi = gpa + size, .rcx = SZ_4K,
	};

	CHECKED_IOCTL(vcpu->fd, KVM_SET_REGS, &regs);
	return vcpu;
}

static struct gap_stats *gap_stats_of(struct vm *vm, int id)
{
	return (struct gap_stats *)(vm->code + GAP_STATS_GPA(id));
}

/* Upper bound of the log2 bucket holding the 99th percentile gap. */
static uint32_t p99_of(struct gap_stats *s, int n)
{
	uint64_t total = 0, seen = 0;

	for (int i = 0; i < n; i++)
		for (int b = 0; b < 32; b++)
			total += s[i].log2_hist[b];
	for (int b = 0; b < 32; b++) {
		for (int i = 0; i < n; i++)
			seen += s[i].log2_hist[b];
		if (seen * 100 >= total * 99)
			return b == 31 ? UINT32_MAX : (2U << b) - 1;
	}
	return UINT32_MAX;
}

static uint64_t presplit(struct vm *vm, uint64_t gpa, uint64_t size)
{
	struct kvm_split_huge_pages args = {
		.gpa = gpa, .size = size,
		.target_level = KVM_SPLIT_HUGE_PAGES_LEVEL_4K,
		.flags = KVM_SPLIT_HUGE_PAGES_HOLD,
	};
	uint64_t nr = 0;
	int r;

	do {
		args.nr_split = 0;
		r = ioctl(vm->fd, KVM_SPLIT_HUGE_PAGES, &args);
		ASSERT(!r || errno == EINTR || errno == EAGAIN, "split: %m");
		nr += args.nr_split;
	} while (r);
	return nr;
}

/* QEMU's first pass: one bitmap sync, then clearing chunk by chunk. */
static void first_dirty_log_pass(struct vm *vm, uint64_t npages,
				 bool initially_set)
{
	uint64_t *bitmap = calloc(npages / 64, sizeof(uint64_t));
	struct kvm_dirty_log get = { .slot = FIRST_TEST_SLOT, .dirty_bitmap = bitmap };

	CHECKED_IOCTL(vm->fd, KVM_GET_DIRTY_LOG, &get);
	if (!initially_set)
		goto out;
	for (uint64_t first = 0; first < npages; first += CLEAR_CHUNK_PAGES) {
		struct kvm_clear_dirty_log clear = {
			.slot = FIRST_TEST_SLOT, .first_page = first,
			.num_pages = CLEAR_CHUNK_PAGES,
			.dirty_bitmap = bitmap + first / 64,
		};

		CHECKED_IOCTL(vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
	}
out:
	free(bitmap);
}

static struct result run_mode(const struct mode *m, uint64_t size)
{
	struct result r = { 0 };
	struct vm *vm = vm_create();
	void *mem = alloc_thp(size);
	atomic_bool stop = false;
	struct writer w[NR_VCPUS];
	struct gap_stats stats[NR_VCPUS];
	uint64_t half = size / NR_VCPUS, pages_2m_before;
	double t0, c0;

	memcpy(vm->code + TIMED_LOOP_GPA, guest_timed_write_loop,
	       guest_timed_write_loop_end - guest_timed_write_loop);
	if (m->initially_set)
		vm_enable_manual_dirty_log(vm, true);
	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, SLOT_GPA, size, mem);
	for (int i = 0; i < NR_VCPUS; i++) {
		w[i] = (struct writer) {
			.vcpu = timed_writer(vm, i, SLOT_GPA + i * half, half),
			.stop = &stop,
		};
		ASSERT_EQ(vcpu_run_pass(w[i].vcpu), 0);	/* fault in, huge */
	}
	ASSERT_EQ(vm_page_counts(vm).pages_2m, size / SZ_2M);

	if (m->presplit) {
		t0 = wall_s();
		c0 = thread_cpu_s();
		r.presplit_nr = presplit(vm, SLOT_GPA, size);
		r.presplit_cpu_s = thread_cpu_s() - c0;
		r.presplit_wall_s = wall_s() - t0;
	}

	for (int i = 0; i < NR_VCPUS; i++)
		pthread_create(&w[i].thread, NULL, writer_thread, &w[i]);
	usleep(200 * 1000);
	pages_2m_before = vm_page_counts(vm).pages_2m;
	for (int i = 0; i < NR_VCPUS; i++)
		memset(gap_stats_of(vm, i), 0, sizeof(struct gap_stats));

	/* The critical path: dirty logging on, then the first pass. */
	t0 = wall_s();
	c0 = thread_cpu_s();
	vm_set_memslot(vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES, SLOT_GPA,
		       size, mem);
	r.enable_cpu_s = thread_cpu_s() - c0;
	r.enable_s = wall_s() - t0;
	t0 = wall_s();
	first_dirty_log_pass(vm, size / SZ_4K, m->initially_set);
	r.first_pass_s = wall_s() - t0;
	r.huge_split_in_path = pages_2m_before - vm_page_counts(vm).pages_2m;

	memcpy(stats, gap_stats_of(vm, 0), sizeof(stats));
	atomic_store(&stop, true);
	for (int i = 0; i < NR_VCPUS; i++) {
		pthread_join(w[i].thread, NULL);
		vcpu_destroy(w[i].vcpu);
		if (stats[i].longest > r.longest_gap)
			r.longest_gap = stats[i].longest;
	}
	r.p99_gap = p99_of(stats, NR_VCPUS);
	vm_destroy(vm);
	munmap(mem, size);
	return r;
}

static double ratio(double with, double without)
{
	return without > 0 ? with / without : 0;
}

static void print_pair(const char *title, struct result *a, struct result *b,
		       double gib, bool eager_mode)
{
	printf("BENCH\nBENCH %s\n", title);
	printf("BENCH %-40s %14s %14s %8s\n", "", "no pre-split", "pre-split", "ratio");
	printf("BENCH %-40s %14.4f %14.4f %8.3f\n", "critical path: enable (s)",
	       a->enable_s, b->enable_s, ratio(b->enable_s, a->enable_s));
	printf("BENCH %-40s %14.4f %14.4f %8.3f\n", "critical path: first pass (s)",
	       a->first_pass_s, b->first_pass_s,
	       ratio(b->first_pass_s, a->first_pass_s));
	printf("BENCH %-40s %14.4f %14.4f %8.3f\n", "critical path: total (s)",
	       a->enable_s + a->first_pass_s, b->enable_s + b->first_pass_s,
	       ratio(b->enable_s + b->first_pass_s, a->enable_s + a->first_pass_s));
	printf("BENCH %-40s %14llu %14llu %8.3f\n", "huge mappings split in the path",
	       (unsigned long long)a->huge_split_in_path,
	       (unsigned long long)b->huge_split_in_path,
	       ratio(b->huge_split_in_path, a->huge_split_in_path));
	printf("BENCH %-40s %14u %14u %8.3f\n", "vCPU longest stall (TSC cycles)",
	       a->longest_gap, b->longest_gap, ratio(b->longest_gap, a->longest_gap));
	printf("BENCH %-40s %14u %14u %8.3f\n", "vCPU p99 write gap (<= TSC cycles)",
	       a->p99_gap, b->p99_gap, ratio(b->p99_gap, a->p99_gap));
	printf("BENCH %-40s %14s %14.4f\n", "pre-split ioctl wall (s)", "-",
	       b->presplit_wall_s);
	printf("BENCH %-40s %14s %14.4f\n", "pre-split ioctl CPU per GiB (s)", "-",
	       b->presplit_cpu_s / gib);
	if (eager_mode)
		printf("BENCH %-40s %14.4f %14s %8.3f\n",
		       "eager split (enable) CPU per GiB (s)", a->enable_cpu_s / gib,
		       "-", ratio(b->presplit_cpu_s, a->enable_cpu_s));
}

int main(int argc, char **argv)
{
	static const struct mode modes[] = {
		{ "qemu", true, false }, { "qemu", true, true },
		{ "eager", false, false }, { "eager", false, true },
	};
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 512;
	struct result r[4];

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < 4; i++) {
		r[i] = run_mode(&modes[i], mib << 20);
		printf("# %s%s done\n", modes[i].name,
		       modes[i].presplit ? "+presplit" : "");
	}
	printf("BENCH %llu MiB of THP memory, %d vCPUs writing, %d huge mappings\n",
	       (unsigned long long)mib, NR_VCPUS, (int)((mib << 20) / SZ_2M));
	print_pair("manual-protect + initially-set (QEMU), first GET/CLEAR pass",
		   &r[0], &r[1], mib / 1024.0, false);
	print_pair("plain dirty logging, eager split at enable",
		   &r[2], &r[3], mib / 1024.0, true);
	return 0;
}
