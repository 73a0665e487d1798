// SPDX-License-Identifier: GPL-2.0
/* ktest: helpers shared by the kernel-tier KVM tests (see ktest.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/mman.h>

#include "ktest.h"

/* A case that runs longer than this is killed and reported as failed. */
#define CASE_TIMEOUT_S	240

static const char *current_case = "?";

void ktest_log(const char *fmt, ...)
{
	va_list ap;

	printf("# %s: ", current_case);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

void ktest_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("# %s: FAILED at %s:%d: ", current_case, file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(1);
}

static volatile sig_atomic_t case_timed_out;

static void note_timeout(int sig)
{
	(void)sig;
	case_timed_out = 1;
}

/* Where each thread of a hung case sits in the kernel, for the log. */
static void print_kernel_stacks(pid_t pid)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd),
		 "for t in /proc/%d/task/*; do echo \"# $t:\"; "
		 "sed 's/^/#   /' $t/stack; done", pid);
	fflush(stdout);
	if (system(cmd))
		ktest_log("could not read the kernel stacks");
}

/* Fork, run one case, and turn its exit status into a verdict. */
static bool run_case(const struct ktest_case *c)
{
	struct sigaction sa = { .sa_handler = note_timeout };
	uint64_t start = now_ns();
	pid_t child;
	int status;

	current_case = c->name;
	fflush(stdout);
	child = fork();
	ASSERT(child >= 0, "fork: %m");
	if (child == 0) {
		c->run();
		exit(0);
	}
	case_timed_out = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(CASE_TIMEOUT_S);
	while (waitpid(child, &status, 0) < 0) {
		ASSERT(errno == EINTR, "waitpid: %m");
		if (case_timed_out) {
			ktest_log("timed out after %d s; kernel stacks:", CASE_TIMEOUT_S);
			print_kernel_stacks(child);
			kill(child, SIGKILL);
		}
	}
	alarm(0);
	ktest_log("%.1f s", (now_ns() - start) / 1e9);
	if (WIFSIGNALED(status)) {
		ktest_log("killed by signal %d", WTERMSIG(status));
		return false;
	}
	return WEXITSTATUS(status) == 0;
}

static bool selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

int ktest_main(const char *prog, const struct ktest_case *cases, size_t nr,
	       int argc, char **argv)
{
	/* The guest's init names the phase (which modules are loaded). */
	const char *phase = getenv("KTEST_PHASE") ?: "";
	int failed = 0, ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		bool known = false;

		for (size_t j = 0; j < nr; j++)
			known |= !strcmp(argv[i], cases[j].name);
		if (!known) {
			printf("KTEST not ok %s%s/%s (no such case)\n", phase,
			       prog, argv[i]);
			failed++;
		}
	}
	for (size_t i = 0; i < nr; i++) {
		bool ok;

		if (!selected(cases[i].name, argc, argv))
			continue;
		ok = run_case(&cases[i]);
		printf("KTEST %s %s%s/%s\n", ok ? "ok" : "not ok", phase,
		       prog, cases[i].name);
		failed += !ok;
		ran++;
	}
	return failed || !ran;
}

/* ---- memory --------------------------------------------------------------- */

static void *map_anonymous(size_t size, int extra_flags)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);

	ASSERT(p != MAP_FAILED, "mmap %zu bytes: %m", size);
	/*
	 * Like QEMU's guest RAM: a fork (run_as_foreign_process) must not make
	 * it copy-on-write, which would zap KVM's mappings via the MMU notifier.
	 */
	ASSERT(!madvise(p, size, MADV_DONTFORK), "MADV_DONTFORK: %m");
	return p;
}

/* AnonHugePages of this process, from /proc/self/smaps_rollup. */
uint64_t anon_huge_bytes(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	unsigned long long kb = 0;
	char line[256];

	ASSERT(f, "smaps_rollup: %m");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

void *alloc_thp(size_t size)
{
	/* Over-allocate so a 2M-aligned start exists, then trim. */
	uint8_t *raw = map_anonymous(size + SZ_2M, 0);
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + SZ_2M - 1) & ~(SZ_2M - 1));

	if (p > raw)
		munmap(raw, p - raw);
	munmap(p + size, raw + SZ_2M - p);
	ASSERT(!madvise(p, size, MADV_HUGEPAGE), "MADV_HUGEPAGE: %m");
	/* Populate it now, like a running guest's memory: KVM then maps host
	 * THPs, not the huge zero page a read fault would give it. */
	memset(p, 0, size);
	ASSERT(anon_huge_bytes() >= size, "only %llu of %zu bytes got THPs",
	       (unsigned long long)anon_huge_bytes(), size);
	return p;
}

void *alloc_hugetlb_1g(size_t size)
{
	return map_anonymous(size, MAP_HUGETLB | MAP_HUGE_1GB);
}

void *alloc_small_pages(size_t size)
{
	void *p = map_anonymous(size, 0);

	ASSERT(!madvise(p, size, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE: %m");
	return p;
}

/* ---- VMs ------------------------------------------------------------------ */

/*
 * Guest code, assembled as 32-bit code but never run on the host: it is
 * copied into the code slot.  Registers: esi = first byte, edi = end,
 * ecx = stride.
 */
extern const uint8_t guest_write_loop[], guest_write_loop_end[];
asm(".pushsection .rodata\n"
    ".code32\n"
    "guest_write_loop:\n"
    "1:	mov %esi, %eax\n"
    "2:	addl $1, (%eax)\n"
    "	add %ecx, %eax\n"
    "	cmp %edi, %eax\n"
    "	jb 2b\n"
    "	out %al, $" "0x10" "\n"	/* PASS_DONE_PORT */
    "	jmp 1b\n"
    "guest_write_loop_end:\n"
    ".code64\n"
    ".popsection\n");

struct vm *vm_create(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ASSERT(vm->kvm_fd >= 0, "open /dev/kvm: %m");
	vm->fd = CHECKED_IOCTL(vm->kvm_fd, KVM_CREATE_VM, 0);
	vm->code = alloc_small_pages(CODE_SLOT_SIZE);
	memcpy(vm->code + CODE_GPA, guest_write_loop,
	       guest_write_loop_end - guest_write_loop);
	vm_set_memslot(vm, CODE_SLOT, 0, 0, CODE_SLOT_SIZE, vm->code);
	vm->stats_fd = stats_fd_of(vm->fd);
	return vm;
}

void vm_destroy(struct vm *vm)
{
	close(vm->stats_fd);
	close(vm->fd);
	close(vm->kvm_fd);
	free(vm);
}

void vm_set_memslot(struct vm *vm, uint32_t slot, uint32_t flags,
		    uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	ASSERT(!ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region),
	       "slot %u gpa 0x%llx size 0x%llx flags 0x%x: %m", slot,
	       (unsigned long long)gpa, (unsigned long long)size, flags);
}

void vm_delete_memslot(struct vm *vm, uint32_t slot)
{
	vm_set_memslot(vm, slot, 0, 0, 0, NULL);
}

void vm_enable_manual_dirty_log(struct vm *vm, bool initially_set)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
			   (initially_set ? KVM_DIRTY_LOG_INITIALLY_SET : 0),
	};

	CHECKED_IOCTL(vm->fd, KVM_ENABLE_CAP, &cap);
}

int stats_fd_of(int vm_fd)
{
	return CHECKED_IOCTL(vm_fd, KVM_GET_STATS_FD, NULL);
}

/* Walk the descriptors of a binary stats fd and read one u64 counter. */
uint64_t stats_read(int stats_fd, const char *name)
{
	struct kvm_stats_header hdr;
	size_t desc_size;
	uint8_t *descs;
	uint64_t value;

	ASSERT(pread(stats_fd, &hdr, sizeof(hdr), 0) == sizeof(hdr),
	       "stats header: %m");
	desc_size = sizeof(struct kvm_stats_desc) + hdr.name_size;
	descs = malloc(desc_size * hdr.num_desc);
	ASSERT(pread(stats_fd, descs, desc_size * hdr.num_desc,
		     hdr.desc_offset) == (ssize_t)(desc_size * hdr.num_desc),
	       "stats descriptors: %m");
	for (uint32_t i = 0; i < hdr.num_desc; i++) {
		struct kvm_stats_desc *d = (void *)(descs + i * desc_size);

		if (strcmp(d->name, name))
			continue;
		ASSERT(pread(stats_fd, &value, sizeof(value),
			     hdr.data_offset + d->offset) == sizeof(value),
		       "stat %s: %m", name);
		free(descs);
		return value;
	}
	ktest_fail(__FILE__, __LINE__, "no stat named %s", name);
}

struct page_counts stats_page_counts(int stats_fd)
{
	return (struct page_counts) {
		.pages_4k = stats_read(stats_fd, "pages_4k"),
		.pages_2m = stats_read(stats_fd, "pages_2m"),
		.pages_1g = stats_read(stats_fd, "pages_1g"),
	};
}

struct page_counts vm_page_counts(struct vm *vm)
{
	return stats_page_counts(vm->stats_fd);
}

void print_page_counts(const char *when, struct page_counts c)
{
	ktest_log("%s: pages_4k=%llu pages_2m=%llu pages_1g=%llu", when,
		  (unsigned long long)c.pages_4k,
		  (unsigned long long)c.pages_2m,
		  (unsigned long long)c.pages_1g);
}

/* ---- vCPUs ---------------------------------------------------------------- */

static void set_flat_segment(struct kvm_segment *seg, uint16_t selector,
			     uint8_t type)
{
	*seg = (struct kvm_segment) {
		.base = 0, .limit = 0xffffffff, .selector = selector,
		.type = type, .present = 1, .s = 1, .db = 1, .g = 1,
	};
}

struct vcpu *vcpu_create(struct vm *vm, int id)
{
	struct vcpu *vcpu = calloc(1, sizeof(*vcpu));
	struct kvm_sregs sregs;
	int run_size;

	vcpu->vm = vm;
	vcpu->fd = CHECKED_IOCTL(vm->fd, KVM_CREATE_VCPU, id);
	run_size = CHECKED_IOCTL(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vcpu->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 vcpu->fd, 0);
	ASSERT(vcpu->run != MAP_FAILED, "mmap kvm_run: %m");

	CHECKED_IOCTL(vcpu->fd, KVM_GET_SREGS, &sregs);
	set_flat_segment(&sregs.cs, 0x8, 0xb);	/* code, read/exec, accessed */
	set_flat_segment(&sregs.ds, 0x10, 0x3);	/* data, read/write, accessed */
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.cr0 |= 1;				/* PE, paging stays off */
	CHECKED_IOCTL(vcpu->fd, KVM_SET_SREGS, &sregs);
	return vcpu;
}

struct vcpu *vcpu_create_writer(struct vm *vm, int id, uint64_t gpa,
				uint64_t size)
{
	struct vcpu *vcpu = vcpu_create(vm, id);
	struct kvm_regs regs = {
		.rip = CODE_GPA, .rflags = 2,
		.rsi = gpa, .rdi = gpa + size, .rcx = SZ_4K,
	};

	ASSERT(gpa + size <= (1ULL << 32), "write loop reaches 4 GiB only");
	CHECKED_IOCTL(vcpu->fd, KVM_SET_REGS, &regs);
	return vcpu;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	munmap(vcpu->run, ioctl(vcpu->vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0));
	close(vcpu->fd);
	free(vcpu);
}

int vcpu_run_pass(struct vcpu *vcpu)
{
	for (;;) {
		if (ioctl(vcpu->fd, KVM_RUN, NULL) < 0) {
			ASSERT(errno == EINTR, "KVM_RUN: %m");
			return -EINTR;
		}
		ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO,
		       "unexpected exit reason %u", vcpu->run->exit_reason);
		if (vcpu->run->io.port == PASS_DONE_PORT)
			return 0;
	}
}

void vcpu_prefault(struct vcpu *vcpu, uint64_t gpa, uint64_t size)
{
	struct kvm_pre_fault_memory range = { .gpa = gpa, .size = size };

	while (range.size) {
		int r = ioctl(vcpu->fd, KVM_PRE_FAULT_MEMORY, &range);

		ASSERT(r == 0 || errno == EINTR || errno == EAGAIN,
		       "KVM_PRE_FAULT_MEMORY at 0x%llx: %m",
		       (unsigned long long)range.gpa);
	}
}

/* ---- foreign callers ------------------------------------------------------ */

static int pidfd_open(pid_t pid)
{
	return syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_getfd(int pidfd, int fd)
{
	return syscall(SYS_pidfd_getfd, pidfd, fd, 0);
}

void run_as_foreign_process(struct vm *vm, void (*fn)(int foreign_vm_fd))
{
	pid_t owner = getpid(), child;
	int status;

	fflush(stdout);
	child = fork();
	ASSERT(child >= 0, "fork: %m");
	if (child == 0) {
		int pidfd = pidfd_open(owner);
		int vm_fd;

		ASSERT(pidfd >= 0, "pidfd_open: %m");
		vm_fd = pidfd_getfd(pidfd, vm->fd);
		ASSERT(vm_fd >= 0, "pidfd_getfd: %m");
		/* Keep nothing inherited from the owner but the taken fd. */
		close(vm->fd);
		close(vm->stats_fd);
		close(vm->kvm_fd);
		fn(vm_fd);
		exit(0);
	}
	ASSERT(waitpid(child, &status, 0) == child, "waitpid: %m");
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "foreign process failed (status 0x%x)", status);
}

/* ---- kvm.eager_page_split ------------------------------------------------- */

bool read_eager_split(void)
{
	char value = 0;
	int fd = open(EAGER_SPLIT_PARAM, O_RDONLY);

	ASSERT(fd >= 0 && read(fd, &value, 1) == 1, EAGER_SPLIT_PARAM ": %m");
	close(fd);
	return value == 'Y';
}

bool set_bool_param(const char *path, bool on)
{
	int fd = open(path, O_WRONLY);
	bool done = fd >= 0 && write(fd, on ? "Y" : "N", 1) == 1;

	if (fd >= 0)
		close(fd);
	return done;
}

bool set_eager_split(bool on)
{
	return set_bool_param(EAGER_SPLIT_PARAM, on);
}

/* ---- tracefs -------------------------------------------------------------- */

bool tracefs_mount(void)
{
	mkdir(TRACEFS, 0755);
	/* EBUSY: mounted already. */
	return !mount("tracefs", TRACEFS, "tracefs", 0, NULL) || errno == EBUSY;
}

bool tracefs_write(const char *file, const char *value)
{
	size_t done = 0, len = strlen(value);
	char path[128];
	ssize_t n = 0;
	int fd;

	snprintf(path, sizeof(path), TRACEFS "/%s", file);
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return false;
	while (done < len && (n = write(fd, value + done, len - done)) > 0)
		done += n;
	if (done < len && n == 0)
		errno = EIO;
	close(fd);
	return done == len;
}

#define CLEAR_MARK	"ktest-clear"

void clear_trace_start(pid_t clear_tid, pid_t vcpu_tid)
{
	char clear_pid[16], vcpu_pid[16];
	const char *const settings[][2] = {
		{ "tracing_on", "0" },
		{ "trace_clock", "global" },
		{ "buffer_size_kb", "8192" },
		{ "set_ftrace_filter", CLEAR_WORD_FN },
		{ "set_ftrace_pid", clear_pid },
		{ "current_tracer", "function" },
		{ "set_event_pid", vcpu_pid },
		{ "events/lock/contention_begin/enable", "1" },
		{ "events/lock/contention_end/enable", "1" },
		{ "trace", "" },
		{ "tracing_on", "1" },
	};

	snprintf(clear_pid, sizeof(clear_pid), "%d", clear_tid);
	snprintf(vcpu_pid, sizeof(vcpu_pid), "%d", vcpu_tid);
	ASSERT(tracefs_mount(), "tracefs: %m");
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		ASSERT(tracefs_write(settings[i][0], settings[i][1]),
		       "tracefs %s: %m", settings[i][0]);
}

void clear_trace_mark(void)
{
	ASSERT(tracefs_write("trace_marker", CLEAR_MARK), "trace_marker: %m");
}

/* Entries the ring buffer dropped since the trace was cleared. */
static unsigned long long trace_overruns(void)
{
	unsigned long long total = 0, n;
	char path[64], line[128];

	for (int cpu = 0;; cpu++) {
		FILE *f;

		snprintf(path, sizeof(path), TRACEFS "/per_cpu/cpu%d/stats", cpu);
		f = fopen(path, "r");
		if (!f)
			return total;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "overrun: %llu", &n) == 1)
				total += n;
		fclose(f);
	}
}

/*
 * Lines come in time order, e.g.
 *   "<comm>-57 [000] ..... 12.345670: tracing_mark_write: ktest-clear"
 *   "<comm>-57 [000] ..... 12.345678: kvm_arch_mmu_enable_log_dirty_pt_masked <-..."
 *   "<comm>-58 [001] d..1. 12.345679: contention_begin: 0xffff... (flags=SPIN|READ)"
 *   "<comm>-58 [001] d..1. 12.345690: contention_end: 0xffff... (ret=0)"
 * A wait is paired with its end by the lock's address.  Begins and ends
 * since the last word are counted when the next word of the same CLEAR
 * comes, so those after a CLEAR's last word never are.
 */
struct clear_trace clear_trace_stop(void)
{
	struct clear_trace t = { 0 };
	unsigned int words_of_clear = 0, began = 0, ended = 0;
	char line[512], lock[32] = "", *p;
	FILE *f;

	ASSERT(tracefs_write("tracing_on", "0"), "tracefs: %m");
	f = fopen(TRACEFS "/trace", "r");
	ASSERT(f, "tracefs trace: %m");
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#') {
			continue;
		} else if (strstr(line, "tracing_mark_write: " CLEAR_MARK)) {
			t.clears++;
			words_of_clear = began = ended = 0;
		} else if (strstr(line, CLEAR_WORD_FN)) {
			if (words_of_clear) {
				t.waits += began;
				t.handovers += ended;
				if (words_of_clear % CLEAR_YIELD_WORDS)
					t.handovers_off_batch += ended;
			}
			words_of_clear++;
			t.words++;
			began = ended = 0;
		} else if ((p = strstr(line, "contention_begin: ")) &&
			   strstr(p, "(flags=SPIN|READ)")) {
			sscanf(p, "contention_begin: %31s", lock);
			began += words_of_clear > 0;
		} else if ((p = strstr(line, "contention_end: ")) && *lock &&
			   !strncmp(p + strlen("contention_end: "), lock,
				    strlen(lock))) {
			*lock = 0;
			ended += words_of_clear > 0;
		}
	}
	fclose(f);
	ASSERT(!trace_overruns(), "the trace overflowed: %llu entries lost",
	       trace_overruns());
	ASSERT(tracefs_write("current_tracer", "nop") &&
	       tracefs_write("set_ftrace_filter", "") &&
	       tracefs_write("set_ftrace_pid", "") &&
	       tracefs_write("set_event_pid", "") &&
	       tracefs_write("events/lock/contention_begin/enable", "0") &&
	       tracefs_write("events/lock/contention_end/enable", "0") &&
	       tracefs_write("trace_clock", "local") &&
	       tracefs_write("trace", ""), "tracefs: %m");
	return t;
}

/* ---- misc ----------------------------------------------------------------- */

bool kernel_preemptible(void)
{
	char model[64] = "";
	struct utsname uts;
	FILE *f;

	/*
	 * PREEMPT_DYNAMIC lists the models with the current one in
	 * parentheses, e.g. "none voluntary (full)"; a kernel built with one
	 * model has no such file, and names a preemptible one in its version
	 * ("#1 SMP PREEMPT ...", "... PREEMPT_RT ...").
	 */
	mkdir("/sys/kernel/debug", 0755);
	if (mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL) &&
	    errno != EBUSY)
		return false;
	f = fopen("/sys/kernel/debug/sched/preempt", "r");
	if (!f)
		return !uname(&uts) && (strstr(uts.version, " PREEMPT ") ||
					strstr(uts.version, " PREEMPT_RT "));
	if (!fgets(model, sizeof(model), f))
		model[0] = 0;
	fclose(f);
	return strstr(model, "(full)") || strstr(model, "(lazy)");
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void noop_handler(int sig)
{
	(void)sig;
}

void install_noop_handler(int sig)
{
	struct sigaction sa = { .sa_handler = noop_handler };

	sigemptyset(&sa.sa_mask);
	ASSERT(!sigaction(sig, &sa, NULL), "sigaction: %m");
}

void vcpu_stop_thread(struct vcpu *vcpu, pthread_t thread)
{
	vcpu->run->immediate_exit = 1;
	pthread_kill(thread, SIGUSR1);
	pthread_join(thread, NULL);
}

void vcpu_fault_forever(struct vcpu *vcpu, void *mem, size_t size,
			atomic_uint *sweeps)
{
	/* Until -EINTR: vcpu_stop_thread() kicked it. */
	while (vcpu_run_pass(vcpu) == 0) {
		/*
		 * The MMU notifier zaps KVM's mappings of the range;
		 * populating it again keeps host page allocation out of the
		 * next sweep.
		 */
		ASSERT(!madvise(mem, size, MADV_DONTNEED) &&
		       !madvise(mem, size, MADV_POPULATE_WRITE),
		       "discarding the faulting vCPU's memory: %m");
		atomic_fetch_add(sweeps, 1);
	}
}

static void *fresh_faulter_thread(void *arg)
{
	struct fresh_faulter *f = arg;

	atomic_store(&f->tid, gettid());
	vcpu_fault_forever(f->vcpu, f->mem, f->size, &f->sweeps);
	return NULL;
}

void fresh_faulter_create(struct fresh_faulter *f, struct vm *vm, int vcpu_id,
			  uint32_t slot, uint64_t gpa, uint64_t size)
{
	f->size = size;
	f->tid = 0;
	f->sweeps = 0;
	f->mem = alloc_small_pages(size);
	memset(f->mem, 0, size);
	vm_set_memslot(vm, slot, 0, gpa, size, f->mem);
	f->vcpu = vcpu_create_writer(vm, vcpu_id, gpa, size);
}

void fresh_faulter_run(struct fresh_faulter *f)
{
	install_noop_handler(SIGUSR1);	/* for vcpu_stop_thread() */
	pthread_create(&f->thread, NULL, fresh_faulter_thread, f);
	while (!atomic_load(&f->tid))
		usleep(1000);
}

void fresh_faulter_stop(struct fresh_faulter *f)
{
	vcpu_stop_thread(f->vcpu, f->thread);
	vcpu_destroy(f->vcpu);
	munmap(f->mem, f->size);
}

/* One KVM_SPLIT_HUGE_PAGES call: 0 or -errno, args updated in place. */
int split_once(int vm_fd, struct kvm_split_huge_pages *args)
{
	return ioctl(vm_fd, KVM_SPLIT_HUGE_PAGES, args) ? -errno : 0;
}

/*
 * Split (or hold, or release) a whole range, resuming after -EINTR/-EAGAIN
 * like a caller must; asserts the in/out contract on every return and
 * returns the total nr_split.
 */
uint64_t split_range(int vm_fd, uint64_t gpa, uint64_t size,
		     uint64_t page_size, uint64_t flags)
{
	struct kvm_split_huge_pages args = {
		.gpa = gpa, .size = size, .page_size = page_size, .flags = flags,
	};
	uint64_t total = 0;
	int r;

	do {
		args.nr_split = 0;
		r = split_once(vm_fd, &args);
		ASSERT(r == 0 || r == -EINTR || r == -EAGAIN,
		       "KVM_SPLIT_HUGE_PAGES [0x%llx, +0x%llx) page size 0x%llx flags 0x%llx: %s",
		       (unsigned long long)gpa, (unsigned long long)size,
		       (unsigned long long)page_size, (unsigned long long)flags,
		       strerror(-r));
		ASSERT_EQ(args.gpa + args.size, gpa + size);
		total += args.nr_split;
	} while (r);
	ASSERT_EQ(args.size, 0);
	ASSERT_EQ(args.gpa, gpa + size);
	return total;
}
