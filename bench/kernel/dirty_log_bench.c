// SPDX-License-Identifier: GPL-2.0
/*
 * The start of a live migration as QEMU drives it, with and without a
 * KVM_SPLIT_HUGE_PAGES pre-split (HOLD) done beforehand, on the same amount
 * of THP-backed guest memory while vCPUs keep writing it.  Three scenarios:
 *
 *   manual-protect + initially-set (QEMU's default): enable dirty logging,
 *   then the first full pass of GET_DIRTY_LOG + CLEAR_DIRTY_LOG in chunks;
 *   the CLEARs split the huge pages under the write lock (eager split);
 *   the same with kvm.eager_page_split=N: the CLEARs only write-protect the
 *   huge pages, and every vCPU splits them later, in its own write faults;
 *   plain dirty logging (eager split inside the enable): enable, then one
 *   GET_DIRTY_LOG.
 *
 * In QEMU's flow with eager split, a third mode runs beside the two when the
 * kvm module offers it (bench/kernel/clear-splits-first.patch, which the
 * benchmark's build applies on top of the series): the smaller alternative
 * to a new ioctl, in which each CLEAR splits its whole range with mmu_lock
 * held for read before its write-locked loop.
 *
 * The pre-split runs while the vCPUs write, as it does on a running VM, so
 * it pays the same contention as eager split does inside the enable.  The
 * time of the split itself, in the ioctl and inside the enable, comes from
 * the function graph tracer (when tracefs is there): the enable also
 * write-protects the whole slot, which is no splitting and costs more.
 *
 * The guest measures itself: between two page writes it reads the TSC and
 * keeps the longest gap and a log2 histogram of the gaps, so vCPU stalls
 * show up as long gaps.  The writers' window runs from the enable until
 * every one has written all of its memory once after the first pass: the
 * faults that dirty logging costs them, splits included, all land in it.
 * One more vCPU keeps faulting in fresh memory, timed over the critical
 * path only: it is the one that waits whenever mmu_lock is held for write.
 * When it has written all of its memory the memory is discarded and it
 * starts over, so that it faults for as long as the path lasts, however
 * fast it runs against the migration thread.
 * It has a CPU to itself, so that its stalls are waits for the lock rather
 * than the guest's scheduler giving its CPU to another thread.  Where the
 * time of a slow-path fault is large against the lock's hold times, as
 * under TCG, its longest stall says little about the lock; the lock
 * contention tracepoints time its waits for mmu_lock on their own, and its
 * longest stall over a window as long as the critical path, just before it,
 * with no dirty-log work going on, is the floor that tells the machine's
 * stalls from KVM's.
 * The modes run in turn, ROUNDS times, and every figure is the median over
 * the rounds, so that one unlucky scheduling decision does not make a
 * ratio.  Prints tables; a benchmark, no asserts on timing.
 *
 *   dirty_log_bench [MiB [vCPUs [rounds]]]     (default 512 1 3)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ktest.h"

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))
#define MAX_VCPUS		16	/* the writers and the faulting vCPU */
#define MAX_ROUNDS		15
#define SLOT_GPA		SZ_1G
/* The guest runs 32-bit code without paging, so it addresses 4 GiB; the
 * slot stays below the 3-4 GiB hole that PCs keep for devices. */
#define MAX_MIB			((3 * SZ_1G - SLOT_GPA) >> 20)
/* Like QEMU (clear-bitmap-shift 18): one CLEAR per GiB, each holding
 * mmu_lock for write from start to end. */
#define CLEAR_CHUNK_PAGES	(SZ_1G / SZ_4K)
/* The faulting vCPU's memory, below the slot: a quarter of its size, and
 * 64 MiB at least, so that it seldom has to start over in the path. */
#define FRESH_SLOT		(FIRST_TEST_SLOT + 1)
#define FRESH_GPA		(256 * 1024 * 1024ULL)
#define MIN_FRESH_SIZE		(64 * 1024 * 1024ULL)
#define MAX_FRESH_SIZE		(512 * 1024 * 1024ULL)
/* The control window before the first round's critical paths, per GiB:
 * about what QEMU's flow takes under TCG.  Later rounds take the length of
 * the same mode's path in the round before, so that the floor and the
 * stall are each the longest over as long a time. */
#define FIRST_FLOOR_WINDOW_S_PER_GIB	0.1

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

struct scenario {
	const char *name, *title;
	bool initially_set;	/* manual-protect + initially-set, as QEMU */
	bool eager_split;	/* kvm.eager_page_split */
};

/* All doubles, so that medians can be taken field by field. */
struct result {
	double presplit_wall_s, presplit_cpu_s;
	double enable_s, enable_cpu_s, first_pass_s, path_s;
	double huge_split_in_path, huge_split_by_vcpus;
	double sweep_after_pass_s;
	double longest_gap, p99_gap, p999_gap;	/* TSC cycles */
	double faulter_longest_gap, faulter_faults;
	double faulter_restarts;	/* in the path, on discarded memory */
	/* The same vCPU over a window with no dirty-log work: its floor. */
	double faulter_floor_gap, faulter_floor_lock_waits;
	/* Traced, -1 if untraced. */
	double ioctl_split_s, enable_split_s;
	double faulter_lock_waits, faulter_longest_wait_us, faulter_wait_us;
};

#define RESULT_FIELDS	(sizeof(struct result) / sizeof(double))

/* The arch split of each ioctl chunk, and eager splitting in the enable. */
#define IOCTL_SPLIT_FN	"kvm_arch_split_huge_pages"
#define ENABLE_SPLIT_FN	"kvm_mmu_slot_try_split_huge_pages"

static bool tracing;

/* What one traced stretch recorded. */
struct trace_summary {
	double split_s;			/* in the split function asked for */
	/* The faulting vCPU's waits for a read lock (mmu_lock). */
	double lock_waits, longest_wait_us, wait_us;
};

/*
 * The function graph tracer on the two split functions only, at depth 1:
 * it records how long each call took and nothing below it.  With it, the
 * lock contention events of one thread (trace_follow): their lines come
 * as comments in the graph, timed by its absolute time stamps.
 */
static void setup_tracing(void)
{
	static const char *const settings[][2] = {
		{ "tracing_on", "0" },
		{ "set_ftrace_filter", IOCTL_SPLIT_FN " " ENABLE_SPLIT_FN },
		{ "max_graph_depth", "1" },
		{ "options/funcgraph-abstime", "1" },
		{ "current_tracer", "function_graph" },
		{ "set_event_pid", "" },
		{ "events/lock/contention_begin/enable", "1" },
		{ "events/lock/contention_end/enable", "1" },
	};

	if (!tracefs_mount()) {
		printf("# no tracing (tracefs: %m): split times and lock waits not measured\n");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
		if (!tracefs_write(settings[i][0], settings[i][1])) {
			printf("# no tracing (%s: %m): split times and lock waits not measured\n",
			       settings[i][0]);
			return;
		}
	}
	tracing = true;
}

/* Leaves tracefs as a host expects it: no tracer, no filter, no events. */
static bool teardown_tracing(void)
{
	return !tracing ||
	       (tracefs_write("current_tracer", "nop") &&
		tracefs_write("set_ftrace_filter", "") &&
		tracefs_write("max_graph_depth", "0") &&
		tracefs_write("options/funcgraph-abstime", "0") &&
		tracefs_write("events/lock/contention_begin/enable", "0") &&
		tracefs_write("events/lock/contention_end/enable", "0") &&
		tracefs_write("set_event_pid", ""));
}

/* Records the events of thread @tid only. */
static void trace_follow(pid_t tid)
{
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", tid);
	if (tracing)
		ASSERT(tracefs_write("set_event_pid", pid), "tracefs: %m");
}

static void trace_start(void)
{
	if (tracing)
		ASSERT(tracefs_write("trace", "") &&
		       tracefs_write("tracing_on", "1"), "tracefs: %m");
}

/*
 * Stops tracing and sums up the trace: the duration of the calls of @fn,
 * from lines such as
 *   " 912.345678 |  1) # 2345.678 us |  kvm_arch_split_huge_pages [kvm]();"
 * and the waits for read locks, from a contention_begin event with
 * "flags=SPIN|READ" to the next contention_end event of the same lock,
 * each line starting with its time stamp (s).  The followed vCPU thread
 * takes mmu_lock for read on every fault, and no other rwlock on that path.
 */
static struct trace_summary trace_stop(const char *fn)
{
	struct trace_summary sum = { 0 };
	char line[512], lock[32] = "", *p;
	double split_us = 0, since = 0, wait_us;
	FILE *f;

	if (!tracing)
		return (struct trace_summary){ -1, -1, -1, -1 };
	ASSERT(tracefs_write("tracing_on", "0"), "tracefs: %m");
	f = fopen(TRACEFS "/trace", "r");
	ASSERT(f, "tracefs: %m");
	while (fgets(line, sizeof(line), f)) {
		if ((p = strstr(line, "contention_begin: ")) &&
		    strstr(p, "(flags=SPIN|READ)")) {
			sscanf(p, "contention_begin: %31s", lock);
			since = strtod(line, NULL);
		} else if ((p = strstr(line, "contention_end: ")) && *lock &&
			   !strncmp(p + strlen("contention_end: "), lock, strlen(lock))) {
			wait_us = (strtod(line, NULL) - since) * 1e6;
			sum.lock_waits++;
			sum.wait_us += wait_us;
			if (wait_us > sum.longest_wait_us)
				sum.longest_wait_us = wait_us;
			*lock = 0;
		} else if ((p = strstr(line, " us ")) && strstr(line, fn)) {
			while (p > line && p[-1] != ' ')
				p--;
			split_us += strtod(p, NULL);
		}
	}
	fclose(f);
	sum.split_s = split_us / 1e6;
	return sum;
}

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
	atomic_uint sweeps;	/* full passes over its memory */
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(w->stop)) {
		ASSERT_EQ(vcpu_run_pass(w->vcpu), 0);
		atomic_fetch_add(&w->sweeps, 1);
	}
	return NULL;
}

/*
 * Waits until every writer has written all of its memory once since now:
 * the sweep under way may have started before, so two more must end.
 */
static void wait_for_full_sweeps(struct writer *w, int n)
{
	unsigned int start[MAX_VCPUS];

	for (int i = 0; i < n; i++)
		start[i] = atomic_load(&w[i].sweeps);
	for (int i = 0; i < n; i++)
		while (atomic_load(&w[i].sweeps) - start[i] < 2)
			usleep(1000);
}

/* Makes vCPU @id (a vcpu_create_writer()) run the timed write loop. */
static struct vcpu *time_writer(struct vcpu *vcpu, int id)
{
	struct kvm_regs regs;

	CHECKED_IOCTL(vcpu->fd, KVM_GET_REGS, &regs);
	regs.rip = TIMED_LOOP_GPA;
	regs.rsp = GAP_STATS_GPA(id);
	CHECKED_IOCTL(vcpu->fd, KVM_SET_REGS, &regs);
	return vcpu;
}

/*
 * A vCPU on KVM's slow fault path all the time: it writes memory it never
 * touched, one 4K page after the other, so every write maps a page with
 * mmu_lock held for read, and waits whenever something holds it for write,
 * such as a CLEAR splitting huge pages.  The writers cannot show that: with
 * eager split on, their faults take the lockless fast path.  It runs from
 * before the pre-split to the end of the first pass and is timed over the
 * critical path only.  It never runs out (fresh_faulter in ktest.h): its
 * memory is discarded after each sweep, which zaps its mappings, and the
 * next sweep faults again.
 *
 * The last CPU is the faulting vCPU's, the others everyone else's: with
 * the TCG guest's two CPUs, the migration thread shares one with the
 * writer, and the faulter's stalls are not scheduler ticks.
 */
static int faulter_cpu = -1;

static void split_cpus(void)
{
	cpu_set_t others;

	ASSERT(!sched_getaffinity(0, sizeof(others), &others),
	       "sched_getaffinity: %m");
	ASSERT(CPU_COUNT(&others) >= 2,
	       "the faulting vCPU needs a CPU of its own: at least 2 CPUs");
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &others))
			faulter_cpu = cpu;
	CPU_CLR(faulter_cpu, &others);
	/* Inherited by every thread created from now on. */
	ASSERT(!sched_setaffinity(0, sizeof(others), &others),
	       "sched_setaffinity: %m");
}

/* Starts the faulting vCPU, on its own CPU. */
static void faulter_run(struct fresh_faulter *f)
{
	cpu_set_t own;

	fresh_faulter_run(f);
	CPU_ZERO(&own);
	CPU_SET(faulter_cpu, &own);
	ASSERT(!pthread_setaffinity_np(f->thread, sizeof(own), &own),
	       "faulter's CPU");
}

static struct gap_stats *gap_stats_of(struct vm *vm, int id)
{
	return (struct gap_stats *)(vm->code + GAP_STATS_GPA(id));
}

/* How many gaps, i.e. page writes, the histogram holds. */
static uint64_t gaps_counted(const struct gap_stats *s)
{
	uint64_t n = 0;

	for (int b = 0; b < 32; b++)
		n += s->log2_hist[b];
	return n;
}

/*
 * Upper bound of the log2 bucket holding the gap that @per_mille of the
 * gaps do not exceed.  p99.9 is the one that catches vCPUs splitting in
 * their own faults: one write in 512 (a 2M page's first) is such a fault.
 */
static uint32_t percentile_of(struct gap_stats *s, int n, int per_mille)
{
	uint64_t total = 0, seen = 0;

	for (int i = 0; i < n; i++)
		total += gaps_counted(&s[i]);
	for (int b = 0; b < 32; b++) {
		for (int i = 0; i < n; i++)
			seen += s[i].log2_hist[b];
		if (seen * 1000 >= total * per_mille)
			return b == 31 ? UINT32_MAX : (2U << b) - 1;
	}
	return UINT32_MAX;
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
			.num_pages = npages - first < CLEAR_CHUNK_PAGES ?
				     npages - first : CLEAR_CHUNK_PAGES,
			.dirty_bitmap = bitmap + first / 64,
		};

		CHECKED_IOCTL(vm->fd, KVM_CLEAR_DIRTY_LOG, &clear);
	}
out:
	free(bitmap);
}

static bool eager_split_was;

/* The kvm module of bench/kernel/clear-splits-first.patch only. */
#define CLEAR_SPLITS_FIRST_PARAM \
	"/sys/module/kvm/parameters/clear_dirty_log_splits_first"

static bool clear_splits_first_available(void)
{
	return !access(CLEAR_SPLITS_FIRST_PARAM, W_OK);
}

/* At exit, failed assertions included: the host's settings as found. */
static void restore_host(void)
{
	if (!teardown_tracing())
		fprintf(stderr, "tracefs: tracer not reset: %m\n");
	if (!set_eager_split(eager_split_was))
		fprintf(stderr, EAGER_SPLIT_PARAM ": not restored: %m\n");
	if (clear_splits_first_available() &&
	    !set_bool_param(CLEAR_SPLITS_FIRST_PARAM, false))
		fprintf(stderr, CLEAR_SPLITS_FIRST_PARAM ": not reset: %m\n");
}

/* The modes of a scenario: without and with a pre-split, and the CLEARs
 * splitting their own range first where that applies. */
enum mode { NO_PRESPLIT, PRESPLIT, CLEAR_SPLITS_FIRST, NR_MODES };

static const char *const mode_suffix[NR_MODES] = {
	"", "+presplit", "+clear-splits-first",
};

static int modes_of(const struct scenario *sc)
{
	return sc->initially_set && sc->eager_split &&
	       clear_splits_first_available() ? NR_MODES : CLEAR_SPLITS_FIRST;
}

static struct result run_mode(const struct scenario *sc, enum mode mode,
			      uint64_t size, int nr_vcpus, double floor_window_s)
{
	bool presplit = mode == PRESPLIT;
	struct result r = { 0 };
	struct vm *vm = vm_create();
	void *mem = alloc_thp(size);
	atomic_bool stop = false;
	struct writer w[MAX_VCPUS];
	struct gap_stats stats[MAX_VCPUS];
	uint64_t share = size / nr_vcpus, pages_2m_before, pages_2m_after_pass;
	uint64_t fresh_size = size / 4 < MIN_FRESH_SIZE ? MIN_FRESH_SIZE :
			      size / 4 > MAX_FRESH_SIZE ? MAX_FRESH_SIZE : size / 4;
	struct gap_stats *faulter_stats = gap_stats_of(vm, nr_vcpus);
	struct fresh_faulter f;
	struct trace_summary path_trace;
	unsigned int sweeps_before;
	double t0, c0;

	ASSERT(set_eager_split(sc->eager_split),
	       EAGER_SPLIT_PARAM " (root needed): %m");
	ASSERT(!clear_splits_first_available() ||
	       set_bool_param(CLEAR_SPLITS_FIRST_PARAM, mode == CLEAR_SPLITS_FIRST),
	       CLEAR_SPLITS_FIRST_PARAM ": %m");
	memcpy(vm->code + TIMED_LOOP_GPA, guest_timed_write_loop,
	       guest_timed_write_loop_end - guest_timed_write_loop);
	if (sc->initially_set)
		vm_enable_manual_dirty_log(vm, true);
	vm_set_memslot(vm, FIRST_TEST_SLOT, 0, SLOT_GPA, size, mem);
	for (int i = 0; i < nr_vcpus; i++) {
		w[i] = (struct writer) {
			.vcpu = time_writer(vcpu_create_writer(vm, i, SLOT_GPA + i * share,
							       share), i),
			.stop = &stop,
		};
		ASSERT_EQ(vcpu_run_pass(w[i].vcpu), 0);	/* fault in, huge */
	}
	ASSERT_EQ(vm_page_counts(vm).pages_2m, size / SZ_2M);
	fresh_faulter_create(&f, vm, nr_vcpus, FRESH_SLOT, FRESH_GPA, fresh_size);
	time_writer(f.vcpu, nr_vcpus);

	for (int i = 0; i < nr_vcpus; i++)
		pthread_create(&w[i].thread, NULL, writer_thread, &w[i]);
	usleep(200 * 1000);
	/* Faulting from before the pre-split, so that the split competes for
	 * the CPUs with the same threads in the ioctl and in the enable. */
	faulter_run(&f);
	trace_follow(f.tid);
	if (presplit) {
		trace_start();
		t0 = wall_s();
		c0 = thread_cpu_s();
		ASSERT_EQ(split_range(vm->fd, SLOT_GPA, size,
				      SZ_4K, KVM_SPLIT_HUGE_PAGES_HOLD),
			  size / SZ_2M);
		r.presplit_cpu_s = thread_cpu_s() - c0;
		r.presplit_wall_s = wall_s() - t0;
		r.ioctl_split_s = trace_stop(IOCTL_SPLIT_FN).split_s;
	}
	pages_2m_before = vm_page_counts(vm).pages_2m;
	/*
	 * The control: the faulter's longest stall while the migration thread
	 * sleeps, everything else as in the critical path.  A stall in the
	 * path no longer than this is the machine's, not KVM's, so a ratio of
	 * the stalls below floor / stall without pre-split is noise.
	 */
	memset(faulter_stats, 0, sizeof(*faulter_stats));
	trace_start();
	usleep(floor_window_s * 1e6);
	r.faulter_floor_gap = faulter_stats->longest;
	r.faulter_floor_lock_waits = trace_stop(ENABLE_SPLIT_FN).lock_waits;
	/* The faulter's too: it is timed over the critical path only. */
	for (int i = 0; i <= nr_vcpus; i++)
		memset(gap_stats_of(vm, i), 0, sizeof(struct gap_stats));

	/* The critical path: dirty logging on, then the first pass. */
	sweeps_before = atomic_load(&f.sweeps);
	trace_start();
	t0 = wall_s();
	c0 = thread_cpu_s();
	vm_set_memslot(vm, FIRST_TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES, SLOT_GPA,
		       size, mem);
	r.enable_cpu_s = thread_cpu_s() - c0;
	r.enable_s = wall_s() - t0;
	t0 = wall_s();
	first_dirty_log_pass(vm, size / SZ_4K, sc->initially_set);
	r.first_pass_s = wall_s() - t0;
	r.path_s = r.enable_s + r.first_pass_s;
	r.faulter_restarts = atomic_load(&f.sweeps) - sweeps_before;
	path_trace = trace_stop(ENABLE_SPLIT_FN);
	r.enable_split_s = path_trace.split_s;
	r.faulter_lock_waits = path_trace.lock_waits;
	r.faulter_longest_wait_us = path_trace.longest_wait_us;
	r.faulter_wait_us = path_trace.wait_us;
	fresh_faulter_stop(&f);
	r.faulter_longest_gap = faulter_stats->longest;
	r.faulter_faults = gaps_counted(faulter_stats);
	pages_2m_after_pass = vm_page_counts(vm).pages_2m;
	r.huge_split_in_path = pages_2m_before - pages_2m_after_pass;

	/* What the vCPUs still pay for dirty logging after the pass. */
	t0 = wall_s();
	wait_for_full_sweeps(w, nr_vcpus);
	r.sweep_after_pass_s = wall_s() - t0;
	/* Whoever split them, none is left once every page was written
	 * under dirty logging; a pre-split is never undone before. */
	ASSERT_EQ(vm_page_counts(vm).pages_2m, 0);
	if (presplit)
		ASSERT_EQ(pages_2m_before, 0);
	r.huge_split_by_vcpus = pages_2m_after_pass;

	for (int i = 0; i < nr_vcpus; i++)
		stats[i] = *gap_stats_of(vm, i);
	atomic_store(&stop, true);
	for (int i = 0; i < nr_vcpus; i++) {
		pthread_join(w[i].thread, NULL);
		vcpu_destroy(w[i].vcpu);
		if (stats[i].longest > r.longest_gap)
			r.longest_gap = stats[i].longest;
	}
	r.p99_gap = percentile_of(stats, nr_vcpus, 990);
	r.p999_gap = percentile_of(stats, nr_vcpus, 999);
	vm_destroy(vm);
	munmap(mem, size);
	return r;
}

static double ratio(double with, double without)
{
	return without > 0 ? with / without : 0;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The field-by-field median of @n results. */
static struct result median_result(const struct result *r, int n)
{
	struct result med;
	double column[MAX_ROUNDS];

	for (size_t f = 0; f < RESULT_FIELDS; f++) {
		for (int i = 0; i < n; i++)
			column[i] = ((const double *)&r[i])[f];
		qsort(column, n, sizeof(double), compare_doubles);
		((double *)&med)[f] = n % 2 ? column[n / 2] :
			(column[n / 2 - 1] + column[n / 2]) / 2;
	}
	return med;
}

static void print_row(const char *what, const char *fmt, double without,
		      double with)
{
	char a[32], b[32];

	snprintf(a, sizeof(a), fmt, without);
	snprintf(b, sizeof(b), fmt, with);
	printf("BENCH %-44s %14s %14s %8.3f\n", what, a, b, ratio(with, without));
}

/* The rows every scenario prints: one field of struct result each. */
static const struct {
	const char *label, *fmt;
	size_t offset;
} common_rows[] = {
#define ROW(label, fmt, field) { label, fmt, offsetof(struct result, field) }
	ROW("critical path: enable (s)", "%.4f", enable_s),
	ROW("critical path: first pass (s)", "%.4f", first_pass_s),
	ROW("critical path: total (s)", "%.4f", path_s),
	ROW("huge mappings split in the path", "%.0f", huge_split_in_path),
	ROW("huge mappings split by vCPU faults after", "%.0f", huge_split_by_vcpus),
	ROW("vCPUs' first full sweep after the pass (s)", "%.4f", sweep_after_pass_s),
	ROW("vCPU longest stall (TSC cycles)", "%.0f", longest_gap),
	ROW("vCPU p99 write gap (<= TSC cycles)", "%.0f", p99_gap),
	ROW("vCPU p99.9 write gap (<= TSC cycles)", "%.0f", p999_gap),
	ROW("faulting vCPU: faults taken in the path", "%.0f", faulter_faults),
	ROW("faulting vCPU: restarts on discarded memory", "%.0f", faulter_restarts),
	ROW("faulting vCPU: waits for mmu_lock", "%.0f", faulter_lock_waits),
	ROW("faulting vCPU: longest wait for it (us)", "%.1f", faulter_longest_wait_us),
	ROW("faulting vCPU: time waiting for it (us)", "%.1f", faulter_wait_us),
	ROW("faulting vCPU: longest stall in the path", "%.0f", faulter_longest_gap),
	ROW("faulting vCPU: longest stall as long before", "%.0f", faulter_floor_gap),
#undef ROW
};

/*
 * The smaller alternative beside the two, on the same rows: eager split in
 * the CLEARs, the CLEARs splitting their range first, pre-split; each ratio
 * against the first.
 */
static void print_with_alternative(const struct result *a,
				   const struct result *c,
				   const struct result *b)
{
	char x[32], y[32], z[32];

	printf("BENCH %-44s %14s %14s %14s %8s %8s\n", "", "no pre-split",
	       "CLEAR first", "pre-split", "first", "pre");
	for (size_t i = 0; i < ARRAY_SIZE(common_rows); i++) {
		size_t off = common_rows[i].offset;
		double without = *(const double *)((const char *)a + off);
		double first = *(const double *)((const char *)c + off);
		double with = *(const double *)((const char *)b + off);

		if (without < 0)	/* -1: traced, and tracefs was not there */
			continue;
		snprintf(x, sizeof(x), common_rows[i].fmt, without);
		snprintf(y, sizeof(y), common_rows[i].fmt, first);
		snprintf(z, sizeof(z), common_rows[i].fmt, with);
		printf("BENCH %-44s %14s %14s %14s %8.3f %8.3f\n",
		       common_rows[i].label, x, y, z, ratio(first, without),
		       ratio(with, without));
	}
}

static void print_pair(const struct scenario *sc, const struct result *a,
		       const struct result *b, const struct result *alternative,
		       double gib)
{
	printf("BENCH\nBENCH %s\n", sc->title);
	if (alternative) {
		print_with_alternative(a, alternative, b);
		printf("BENCH\n");
	}
	printf("BENCH %-44s %14s %14s %8s\n", "", "no pre-split", "pre-split", "ratio");
	for (size_t i = 0; i < ARRAY_SIZE(common_rows); i++) {
		double without = *(const double *)((const char *)a + common_rows[i].offset);
		double with = *(const double *)((const char *)b + common_rows[i].offset);

		if (without >= 0)	/* -1: traced, and tracefs was not there */
			print_row(common_rows[i].label, common_rows[i].fmt,
				  without, with);
	}
	/* The lowest ratio of the stalls in the path that is not noise. */
	printf("BENCH %-44s %14s %14s %8.3f\n",
	       "  floor with pre-split / stall without", "", "",
	       ratio(b->faulter_floor_gap, a->faulter_longest_gap));
	printf("BENCH %-44s %14s %14.4f\n", "pre-split ioctl wall (s)", "-",
	       b->presplit_wall_s);
	if (sc->initially_set) {
		printf("BENCH %-44s %14s %14.4f\n",
		       "pre-split ioctl CPU per GiB (s)", "-",
		       b->presplit_cpu_s / gib);
		return;
	}
	/* Eager split inside the enable on the left, the ioctl's split of the
	 * same memory on the right.  The two enables differ only by eager
	 * split's work, so the difference of their CPU times is its CPU; the
	 * ioctl's is its thread's, its hold included.  The tracer gives the
	 * time spent in either split function. */
	print_row("enable CPU per GiB (s)", "%.4f", a->enable_cpu_s / gib,
		  b->enable_cpu_s / gib);
	print_row("split CPU per GiB (s): enable's extra, ioctl", "%.4f",
		  (a->enable_cpu_s - b->enable_cpu_s) / gib,
		  b->presplit_cpu_s / gib);
	if (a->enable_split_s >= 0)
		print_row("split time per GiB (s), traced", "%.4f",
			  a->enable_split_s / gib, b->ioctl_split_s / gib);
}

int main(int argc, char **argv)
{
	static const struct scenario scenarios[] = {
		{ "qemu", "manual-protect + initially-set (QEMU), first GET/CLEAR pass",
		  true, true },
		{ "qemu-no-eager", "the same with kvm.eager_page_split=N: vCPUs split in their faults",
		  true, false },
		{ "eager", "plain dirty logging, eager split at enable",
		  false, true },
	};
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 512;
	int nr_vcpus = argc > 2 ? atoi(argv[2]) : 1;
	int rounds = argc > 3 ? atoi(argv[3]) : 3;
	/* [scenario][pre-split][round] */
	struct result r[ARRAY_SIZE(scenarios)][NR_MODES][MAX_ROUNDS];
	struct vm *keeper;
	struct vcpu *keeper_vcpu;

	ASSERT(mib >= 2 && mib % 2 == 0 && mib <= MAX_MIB,
	       "MiB must be a multiple of 2 from 2 to %llu", MAX_MIB);
	ASSERT(nr_vcpus >= 1 && nr_vcpus < MAX_VCPUS &&
	       (mib / 2) % nr_vcpus == 0,
	       "vCPUs must be 1-%d and share the 2 MiB pages evenly",
	       MAX_VCPUS - 1);
	ASSERT(rounds >= 1 && rounds <= MAX_ROUNDS, "rounds must be 1-%d",
	       MAX_ROUNDS);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* For vcpu_stop_thread(): KVM_RUN returns -EINTR on SIGUSR1. */
	install_noop_handler(SIGUSR1);
	split_cpus();
	eager_split_was = read_eager_split();
	/*
	 * KVM flips static keys (preempt notifiers, vCPUs without an in-kernel
	 * APIC) when the first VM or vCPU comes and the last one goes, which
	 * patches kernel text.  One idle VM with a vCPU for the whole run keeps
	 * that from happening between the modes, while vCPUs run: cheaper on
	 * any host, and under multi-threaded TCG it avoids the emulator's
	 * text-patching race (tests/kernel/lib/boot.sh).
	 */
	keeper = vm_create();
	keeper_vcpu = vcpu_create(keeper, 0);
	setup_tracing();
	atexit(restore_host);
	/* Modes in turn within each round: a drift of the machine over the
	 * run touches all of them alike. */
	for (int round = 0; round < rounds; round++) {
		for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++) {
			for (int mode = 0; mode < modes_of(&scenarios[i]); mode++) {
				struct result *x = &r[i][mode][round];
				double window_s = round ?
					r[i][mode][round - 1].path_s :
					FIRST_FLOOR_WINDOW_S_PER_GIB * mib / 1024;

				*x = run_mode(&scenarios[i], mode, mib << 20,
					      nr_vcpus, window_s);
				printf("# round %d %s%s: enable %.4f s (CPU %.4f s, split %.4f s), first pass %.4f s, sweep after %.4f s, vCPU splits %.0f, stall %.0f, faulter stall %.0f (%.0f faults, %.0f restarts, %.0f lock waits, longest %.1f us; floor %.0f over %.4f s, %.0f lock waits), ioctl %.4f s (CPU %.4f s, split %.4f s)\n",
				       round + 1, scenarios[i].name,
				       mode_suffix[mode], x->enable_s,
				       x->enable_cpu_s, x->enable_split_s,
				       x->first_pass_s, x->sweep_after_pass_s,
				       x->huge_split_by_vcpus, x->longest_gap,
				       x->faulter_longest_gap, x->faulter_faults,
				       x->faulter_restarts,
				       x->faulter_lock_waits,
				       x->faulter_longest_wait_us,
				       x->faulter_floor_gap, window_s,
				       x->faulter_floor_lock_waits,
				       x->presplit_wall_s, x->presplit_cpu_s,
				       x->ioctl_split_s);
			}
		}
	}
	vcpu_destroy(keeper_vcpu);
	vm_destroy(keeper);

	/* A CLEAR gives mmu_lock up to a waiting vCPU only on a preemptible
	 * kernel: the faulting vCPU's waits depend on it. */
	printf("BENCH %llu MiB of THP memory, %d vCPU(s) writing, %d huge mappings, faulting vCPU alone on CPU %d, median of %d round(s), %s kernel\n",
	       (unsigned long long)mib, nr_vcpus, (int)((mib << 20) / SZ_2M),
	       faulter_cpu, rounds,
	       kernel_preemptible() ? "preemptible" : "non-preemptible");
	for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++) {
		struct result without = median_result(r[i][NO_PRESPLIT], rounds);
		struct result with = median_result(r[i][PRESPLIT], rounds);
		struct result first;

		if (modes_of(&scenarios[i]) > CLEAR_SPLITS_FIRST)
			first = median_result(r[i][CLEAR_SPLITS_FIRST], rounds);
		print_pair(&scenarios[i], &without, &with,
			   modes_of(&scenarios[i]) > CLEAR_SPLITS_FIRST ? &first : NULL,
			   mib / 1024.0);
	}
	return 0;
}
