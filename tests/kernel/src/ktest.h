/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ktest: a tiny helper library for the kernel-tier KVM tests, in the spirit
 * of tools/testing/selftests/kvm/lib but small enough to link statically
 * into an initramfs.
 *
 * Every test case runs in its own forked process, so a failed assertion just
 * exits that process and the runner reports "KTEST not ok <prog>/<case>".
 */
#ifndef KTEST_H
#define KTEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/kvm.h>

#define SZ_4K	(1ULL << 12)
#define SZ_2M	(1ULL << 21)
#define SZ_1G	(1ULL << 30)

/* ---- reporting ---------------------------------------------------------- */

void ktest_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
void ktest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define ASSERT(cond, fmt, ...)						\
	do {								\
		if (!(cond))						\
			ktest_fail(__FILE__, __LINE__, "(%s) " fmt,	\
				   #cond, ##__VA_ARGS__);		\
	} while (0)

#define ASSERT_EQ(a, b)							\
	do {								\
		unsigned long long __a = (a), __b = (b);		\
		if (__a != __b)						\
			ktest_fail(__FILE__, __LINE__,			\
				   "%s == %s: %lld (0x%llx) != %lld (0x%llx)", \
				   #a, #b, __a, __a, __b, __b);		\
	} while (0)

/* An ioctl expected to succeed; returns its (non-negative) result. */
#define CHECKED_IOCTL(fd, req, arg)					\
	({								\
		int __r = ioctl(fd, req, arg);				\
		ASSERT(__r >= 0, "ioctl %s: %m", #req);			\
		__r;							\
	})

struct ktest_case {
	const char *name;
	void (*run)(void);
};

/*
 * Run the cases named on the command line (all of them when none is named),
 * each in a child process with a watchdog.  Prints one line per case and
 * returns the process exit status: 0 only if every selected case passed.
 */
int ktest_main(const char *prog, const struct ktest_case *cases, size_t nr,
	       int argc, char **argv);

/* ---- memory --------------------------------------------------------------- */

/* 2M-aligned, MADV_HUGEPAGE, populated; asserts it is THP-backed. */
void *alloc_thp(size_t size);
uint64_t anon_huge_bytes(void);
void *alloc_hugetlb_1g(size_t size);	/* MAP_HUGETLB | MAP_HUGE_1GB */
void *alloc_small_pages(size_t size);	/* MADV_NOHUGEPAGE */

/* ---- VMs ------------------------------------------------------------------ */

struct page_counts {
	uint64_t pages_4k;
	uint64_t pages_2m;
	uint64_t pages_1g;
};

struct vm {
	int kvm_fd;
	int fd;
	int stats_fd;
	uint8_t *code;		/* host view of the code slot */
};

/* Guest code lives in slot 0 at GPA 0; tests use slots from 1 up. */
#define CODE_SLOT	0
#define CODE_GPA	0x1000ULL
#define CODE_SLOT_SIZE	(64 * 1024)
#define FIRST_TEST_SLOT	1

struct vm *vm_create(void);
void vm_destroy(struct vm *vm);
void vm_set_memslot(struct vm *vm, uint32_t slot, uint32_t flags,
		    uint64_t gpa, uint64_t size, void *hva);
void vm_delete_memslot(struct vm *vm, uint32_t slot);
void vm_enable_manual_dirty_log(struct vm *vm, bool initially_set);

/* Binary stats: the three mapping counters of a VM stats fd. */
int stats_fd_of(int vm_fd);
uint64_t stats_read(int stats_fd, const char *name);
struct page_counts stats_page_counts(int stats_fd);
struct page_counts vm_page_counts(struct vm *vm);
void print_page_counts(const char *when, struct page_counts c);

/* ---- vCPUs ---------------------------------------------------------------- */

struct vcpu {
	struct vm *vm;
	int fd;
	struct kvm_run *run;
};

/*
 * A vCPU in 32-bit flat protected mode (no guest paging: guest addresses are
 * GPAs) running the write loop: one "addl $1" on the first dword of every 4K
 * page of [gpa, gpa + size), then an OUT to PASS_DONE_PORT, over and over.
 */
#define PASS_DONE_PORT	0x10

/* A vCPU in flat protected mode, no code to run set up yet. */
struct vcpu *vcpu_create(struct vm *vm, int id);
struct vcpu *vcpu_create_writer(struct vm *vm, int id, uint64_t gpa,
				uint64_t size);
void vcpu_destroy(struct vcpu *vcpu);
/* Run until one full pass is done: 0, or -errno when KVM_RUN was interrupted. */
int vcpu_run_pass(struct vcpu *vcpu);
/*
 * KVM_PRE_FAULT_MEMORY over the whole range; asserts success.  Not after a
 * memslot deletion or move without a KVM_RUN in between: 6.12 then retries
 * forever on the vCPU's obsolete root (fixed upstream later).
 */
void vcpu_prefault(struct vcpu *vcpu, uint64_t gpa, uint64_t size);
/*
 * Stop a vCPU that @thread runs in KVM_RUN, for good, and join the thread:
 * immediate_exit makes every later KVM_RUN return -EINTR, and SIGUSR1 (with
 * install_noop_handler(SIGUSR1) done beforehand) interrupts the current one.
 */
void vcpu_stop_thread(struct vcpu *vcpu, pthread_t thread);

/*
 * Runs @vcpu's write loop (vcpu_create_writer) over memory whose host view
 * is [mem, mem + size), discarding the memory after each sweep so that the
 * next one faults every page in again: a vCPU on KVM's slow fault path for
 * as long as it runs, however fast, until vcpu_stop_thread() stops it.
 * Counts its sweeps in @sweeps.
 */
void vcpu_fault_forever(struct vcpu *vcpu, void *mem, size_t size,
			atomic_uint *sweeps);

/*
 * vCPU @vcpu_id running vcpu_fault_forever() over fresh small pages of its
 * own (memslot @slot at @gpa, present in the host so that its faults time
 * KVM's fault path, not page allocation) on a thread of its own: a vCPU
 * that waits for mmu_lock whenever someone holds it for write.
 */
struct fresh_faulter {
	struct vcpu *vcpu;	/* a vcpu_create_writer() over its memory */
	void *mem;
	uint64_t size;
	pthread_t thread;
	atomic_int tid;		/* its thread's */
	atomic_uint sweeps;
};

/* The memory, the memslot and the vCPU. */
void fresh_faulter_create(struct fresh_faulter *f, struct vm *vm, int vcpu_id,
			  uint32_t slot, uint64_t gpa, uint64_t size);
/* Starts its thread; returns once the thread runs. */
void fresh_faulter_run(struct fresh_faulter *f);
/* Stops the thread, destroys the vCPU and unmaps the memory. */
void fresh_faulter_stop(struct fresh_faulter *f);

/* One KVM_SPLIT_HUGE_PAGES call: 0 or -errno, args updated in place. */
int split_once(int vm_fd, struct kvm_split_huge_pages *args);
/* A whole range, resumed after -EINTR/-EAGAIN; returns the total nr_split. */
uint64_t split_range(int vm_fd, uint64_t gpa, uint64_t size,
		     uint64_t page_size, uint64_t flags);

/* ---- foreign callers ------------------------------------------------------ */

/*
 * Run fn in a child process that holds only a copy of the VM fd taken from
 * this process with pidfd_open + pidfd_getfd, the way the host helper takes
 * it out of QEMU.  Returns when the child is done; asserts it passed.
 */
void run_as_foreign_process(struct vm *vm, void (*fn)(int foreign_vm_fd));

/* ---- kvm.eager_page_split (host-wide; root) ------------------------------ */

#define EAGER_SPLIT_PARAM	"/sys/module/kvm/parameters/eager_page_split"

bool read_eager_split(void);		/* asserts it can be read */
bool set_eager_split(bool on);		/* false with errno set if not */
/* Writes Y or N to a module parameter; false with errno set if it could not. */
bool set_bool_param(const char *path, bool on);

/* ---- tracefs -------------------------------------------------------------- */

#define TRACEFS		"/sys/kernel/tracing"

/* Mounts tracefs at TRACEFS unless it is there already; false with errno
 * set if it is not there (a kernel without tracing, say). */
bool tracefs_mount(void);
/* Writes @value to TRACEFS/@file (which may take it a word at a time),
 * truncating it first; false with errno set if it could not. */
bool tracefs_write(const char *file, const char *value);

/*
 * KVM_CLEAR_DIRTY_LOG's lock hand-overs, read from the kernel's own trace:
 * the function tracer marks each 64-page word a CLEAR write-protects (one
 * call of CLEAR_WORD_FN per word with bits to clear), the lock contention
 * events mark a vCPU's waits for mmu_lock (read), and one global clock
 * orders the two.  Within one CLEAR, a wait of the vCPU that ends (it got
 * the lock) after one word and before another is a hand-over: a CLEAR that
 * holds the lock from its first word to its last cannot make one, however
 * the threads are scheduled.
 */
#define CLEAR_WORD_FN	"kvm_arch_mmu_enable_log_dirty_pt_masked"
/*
 * The series' KVM_DIRTY_LOG_YIELD_WORDS: a patched CLEAR may give mmu_lock
 * up only after a multiple of this many words (a word's own eager split of a
 * huge mapping may drop it anywhere).
 */
#define CLEAR_YIELD_WORDS	16

struct clear_trace {
	unsigned int clears;	/* marked with clear_trace_mark() */
	unsigned int words;	/* calls of CLEAR_WORD_FN */
	/* The vCPU's waits that began, and that ended, between two words
	 * of the same CLEAR. */
	unsigned int waits, handovers;
	/* Hand-overs after a number of words of their CLEAR that is not a
	 * multiple of CLEAR_YIELD_WORDS. */
	unsigned int handovers_off_batch;
};

/* Traces the CLEARs of thread @clear_tid and the waits of @vcpu_tid. */
void clear_trace_start(pid_t clear_tid, pid_t vcpu_tid);
/* Marks the start of a CLEAR: call it right before the ioctl. */
void clear_trace_mark(void);
/* Stops tracing, reads the trace back and leaves tracefs as a host expects
 * it (no tracer, filter or events); asserts nothing was overwritten. */
struct clear_trace clear_trace_stop(void);

/* ---- misc ----------------------------------------------------------------- */

/*
 * Whether this kernel is preemptible (CONFIG_PREEMPT, or PREEMPT_DYNAMIC
 * booted with preempt=full): only then does rwlock_needbreak() report a
 * contended lock, and so only then does a patched CLEAR let a waiting vCPU
 * in whenever it waits.
 */
bool kernel_preemptible(void);
uint64_t now_ns(void);
/* Install a handler that does nothing, without SA_RESTART, so blocking
 * ioctls return -EINTR when the signal arrives. */
void install_noop_handler(int sig);

#endif
