// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_CLEAR_DIRTY_LOG and the vCPUs that wait for mmu_lock meanwhile.
 *
 * The CLEAR write-protects its range with mmu_lock held for write, one
 * kvm_arch_mmu_enable_log_dirty_pt_masked() call per 64-page word.  Over
 * memory that is mapped with 4K pages (a pre-split guest, or one backed by
 * small pages) the stock 6.12 CLEAR never lets go of the lock from its first
 * word to its last, so a vCPU that faults on fresh memory waits for the whole
 * range; the series' first patch makes the CLEAR drop the lock between two
 * words when someone waits.
 *
 * Both cases read the answer from the kernel's own trace rather than from
 * how far the vCPU got, which depends on how the two threads are scheduled:
 * the function tracer marks the CLEAR's words, the lock contention events
 * mark the faulting vCPU's waits for mmu_lock (read), and one global trace
 * clock orders the two.  A wait of the vCPU that ends (it got the lock)
 * after the CLEAR's first word and before its last one is a hand-over: the
 * stock CLEAR cannot make one, whatever the timing.  A CLEAR during which
 * the vCPU never began waiting says nothing either way (the vCPU was not
 * scheduled then, or not faulting): it is run again in a new VM.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
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

#define CLEAR_WORD_FN	"kvm_arch_mmu_enable_log_dirty_pt_masked"

/*
 * CLEARs to run, each in a new VM, until the vCPU waits during one: it did
 * in nearly every CLEAR here, so 20 in a row without is a broken test.
 */
#define MAX_CLEARS		20
/*
 * A wait that began just before the CLEAR's last check for waiters may
 * become visible to the CLEAR only after it (the vCPU's trace event comes a
 * few instructions before it queues on the lock), so one CLEAR with a wait
 * and no hand-over can happen with a yielding CLEAR; three cannot, short of
 * a CLEAR that does not yield.
 */
#define MAX_WAITS_NOT_HANDED_OVER	3

struct faulter {
	struct vcpu *vcpu;
	volatile uint32_t *mem;	/* host view of the fresh slot */
	pthread_t thread;
	atomic_int tid;
};

static void *faulter_thread(void *arg)
{
	struct faulter *f = arg;

	atomic_store(&f->tid, gettid());
	/*
	 * One pass or less: it ends with the kick.  Running out of fresh
	 * memory before the CLEAR ends only makes a CLEAR without a wait.
	 */
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

/* What the trace shows of one CLEAR. */
struct clear_trace {
	unsigned int words;	/* calls of CLEAR_WORD_FN */
	/* The vCPU's waits for mmu_lock (read) that began, and those that
	 * ended, after the first word's call and before the last one's. */
	unsigned int waits, handovers;
};

/*
 * The CLEAR's words (the function tracer, on its thread only) and the
 * faulting vCPU's lock contention events, ordered by the global clock.
 */
static void trace_setup(pid_t clear_tid, pid_t vcpu_tid)
{
	char clear_pid[16], vcpu_pid[16];
	const char *const settings[][2] = {
		{ "tracing_on", "0" },
		{ "trace_clock", "global" },
		{ "buffer_size_kb", "4096" },
		{ "set_ftrace_filter", CLEAR_WORD_FN },
		{ "set_ftrace_pid", clear_pid },
		{ "current_tracer", "function" },
		{ "set_event_pid", vcpu_pid },
		{ "events/lock/contention_begin/enable", "1" },
		{ "events/lock/contention_end/enable", "1" },
		{ "trace", "" },
	};

	snprintf(clear_pid, sizeof(clear_pid), "%d", clear_tid);
	snprintf(vcpu_pid, sizeof(vcpu_pid), "%d", vcpu_tid);
	ASSERT(tracefs_mount(), "tracefs: %m");
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		ASSERT(tracefs_write(settings[i][0], settings[i][1]),
		       "tracefs %s: %m", settings[i][0]);
}

/* Leaves tracefs as a host expects it: no tracer, filter or events. */
static void trace_teardown(void)
{
	ASSERT(tracefs_write("tracing_on", "0") &&
	       tracefs_write("current_tracer", "nop") &&
	       tracefs_write("set_ftrace_filter", "") &&
	       tracefs_write("set_ftrace_pid", "") &&
	       tracefs_write("set_event_pid", "") &&
	       tracefs_write("events/lock/contention_begin/enable", "0") &&
	       tracefs_write("events/lock/contention_end/enable", "0") &&
	       tracefs_write("trace_clock", "local") &&
	       tracefs_write("trace", ""), "tracefs: %m");
}

/*
 * Reads the trace back.  Lines come in time order, e.g.
 *   "<comm>-57 [000] ..... 12.345678: kvm_arch_mmu_enable_log_dirty_pt_masked <-..."
 *   "<comm>-58 [001] d..1. 12.345679: contention_begin: 0xffff... (flags=SPIN|READ)"
 *   "<comm>-58 [001] d..1. 12.345690: contention_end: 0xffff... (ret=0)"
 * A wait is paired with its end by the lock's address.  Every word of the
 * bitmap is set, so the CLEAR calls CLEAR_WORD_FN LOGGED_WORDS times.
 */
static struct clear_trace trace_read(void)
{
	struct clear_trace t = { 0 };
	char line[512], lock[32] = "", *p;
	FILE *f = fopen(TRACEFS "/trace", "r");
	bool inside;

	ASSERT(f, "tracefs trace: %m");
	while (fgets(line, sizeof(line), f)) {
		/* After the first word's call, before the last one's. */
		inside = t.words >= 1 && t.words < LOGGED_WORDS;
		if (line[0] == '#') {
			continue;
		} else if (strstr(line, CLEAR_WORD_FN)) {
			t.words++;
		} else if ((p = strstr(line, "contention_begin: ")) &&
			   strstr(p, "(flags=SPIN|READ)")) {
			sscanf(p, "contention_begin: %31s", lock);
			t.waits += inside;
		} else if ((p = strstr(line, "contention_end: ")) && *lock &&
			   !strncmp(p + strlen("contention_end: "), lock,
				    strlen(lock))) {
			*lock = 0;
			t.handovers += inside;
		}
	}
	fclose(f);
	/* One missing: overwritten in the ring buffer, or the function is
	 * no longer traceable. */
	ASSERT_EQ(t.words, LOGGED_WORDS);
	return t;
}

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
	uint64_t before, after, start_ns, clear_ns;
	struct clear_trace t;
	struct page_counts c;
	struct faulter f = { .tid = 0 };

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
	while (!atomic_load(&f.tid) || pages_faulted(&f) < 16)
		;
	trace_setup(gettid(), f.tid);

	ASSERT(tracefs_write("tracing_on", "1"), "tracefs: %m");
	before = pages_faulted(&f);
	start_ns = now_ns();
	CHECKED_IOCTL(vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
	clear_ns = now_ns() - start_ns;
	after = pages_faulted(&f);
	ASSERT(tracefs_write("tracing_on", "0"), "tracefs: %m");

	vcpu_stop_thread(f.vcpu, f.thread);
	t = trace_read();
	trace_teardown();
	ktest_log("CLEAR of %llu pages took %.1f ms; the faulting vCPU began %u waits for mmu_lock during it, got it %u times, mapped %llu fresh pages",
		  (unsigned long long)(LOGGED_SIZE / SZ_4K), clear_ns / 1e6,
		  t.waits, t.handovers, (unsigned long long)(after - before));
	vcpu_destroy(f.vcpu);
	vm_destroy(vm);
	munmap(logged, LOGGED_SIZE);
	munmap((void *)f.mem, FRESH_SIZE);
	free(clear.dirty_bitmap);
	return t;
}

/* Patched modules: the CLEAR hands the lock over while the vCPU waits. */
static void clear_lets_faulting_vcpu_in(void)
{
	unsigned int not_handed_over = 0;

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
