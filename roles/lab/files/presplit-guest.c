/*
 * presplit-guest: the lab guest's workload (runs as the initramfs' main
 * process under a tiny TCG domain).
 *
 * It owns a buffer of BUF_MIB MiB, rewrites pages at DIRTY_MIB_S MiB/s (0 =
 * idle), and keeps re-verifying every page against the content it must
 * hold.  A page's content is a pure function of (page index, generation,
 * word index) and the generation of every page lives in a separate table,
 * so any byte a live migration loses or corrupts -- in the buffer or in the
 * table -- shows up as a mismatch.  The whole buffer is verified about once a
 * second (less when the CPU cannot keep up: see passes=).  Once a second it prints one status line
 * on the console:
 *
 *   presplit-guest seq=12 up_ms=12003 buf_mib=16 dirty_mib_s=8
 *     dirtied_mib=96 verified_pages=49152 passes=12 errors=0
 *
 * (one line).  seq increasing says the guest is alive; errors=0 says no
 * corruption was seen.  The first mismatches are also printed in detail.
 *
 * With a DISK (a block device: the guest's local disk), it does the same to
 * the disk's 4 KiB blocks with direct I/O, so each read goes to the host's
 * image: it rewrites DISK_BLOCKS_S blocks a second and re-verifies the whole
 * disk every few seconds, and the status line gains, before errors=,
 *
 *   disk_mib=32 disk_written_blocks=640 disk_verified_blocks=40960
 *     disk_passes=5 disk_errors=0
 *
 * A block the workload never rewrote holds generation 0, the content
 * `presplit-guest --disk-pattern FILE MIB` writes, so an image can start
 * over a backing image made that way.  At start it writes generation 0 to
 * every block that does not hold it already (a new, blank image).
 *
 * Usage: presplit-guest [BUF_MIB [DIRTY_MIB_S [DISK DISK_BLOCKS_S]]]
 *        presplit-guest --disk-pattern FILE MIB
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#define PAGE_WORDS (4096 / sizeof(uint64_t))
#define SLICES_PER_SECOND 20
#define MAX_REPORTED_ERRORS 10
/* Disk blocks are read and verified this many at a time (64 KiB). */
#define CHUNK_BLOCKS 16
/* A disk block's key: never a memory page's (those stay below 2^30). */
#define DISK_KEY(block) ((block) + (1ULL << 30))
/* Seconds a whole pass over the disk takes at most. */
#define DISK_PASS_S 4

static uint64_t expected_word(uint64_t page, uint32_t generation, uint64_t word)
{
	/* splitmix64 finaliser: every (page, generation, word) differs. */
	uint64_t x = (page << 32) ^ ((uint64_t)generation << 12) ^ word;

	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_page(uint64_t *buf, uint32_t *generations, uint64_t page)
{
	uint64_t *p = buf + page * PAGE_WORDS;
	uint32_t generation = generations[page] + 1;

	for (uint64_t w = 0; w < PAGE_WORDS; w++)
		p[w] = expected_word(page, generation, w);
	generations[page] = generation;
}

/* Returns the number of mismatching words found in the page. */
static uint64_t verify_page(const uint64_t *buf, const uint32_t *generations,
			    uint64_t page, uint64_t errors_so_far)
{
	const volatile uint64_t *p = buf + page * PAGE_WORDS;
	uint32_t generation = generations[page];
	uint64_t bad = 0;

	for (uint64_t w = 0; w < PAGE_WORDS; w++) {
		uint64_t want = expected_word(page, generation, w);
		uint64_t got = p[w];

		if (got == want)
			continue;
		if (errors_so_far + bad < MAX_REPORTED_ERRORS)
			printf("presplit-guest MISMATCH page=%llu word=%llu generation=%u "
			       "expected=%016llx got=%016llx\n",
			       (unsigned long long)page, (unsigned long long)w,
			       generation, (unsigned long long)want,
			       (unsigned long long)got);
		bad++;
	}
	return bad;
}

struct disk {
	int fd;
	uint64_t blocks, mib;
	uint32_t *generations;
	uint64_t *chunk;		/* CHUNK_BLOCKS blocks, 4 KiB aligned */
	uint64_t write_cursor, verify_cursor, written, verified, passes, errors;
	uint64_t write_debt_num, writes_per_s;
};

static void fill_block(uint64_t *p, uint64_t block, uint32_t generation)
{
	for (uint64_t w = 0; w < PAGE_WORDS; w++)
		p[w] = expected_word(DISK_KEY(block), generation, w);
}

static int disk_io(struct disk *d, int write, uint64_t first, uint64_t count)
{
	ssize_t want = (ssize_t)(count * 4096);
	off_t at = (off_t)(first * 4096);
	ssize_t done = write ? pwrite(d->fd, d->chunk, want, at) : pread(d->fd, d->chunk, want, at);

	if (done == want)
		return 0;
	if (d->errors++ < MAX_REPORTED_ERRORS)
		printf("presplit-guest DISK IOERROR %s block=%llu count=%llu: %s\n", write ? "write" : "read",
		       (unsigned long long)first, (unsigned long long)count,
		       done < 0 ? strerror(errno) : "short transfer");
	return -1;
}

/* Verify blocks [first, first + count) against their generations. */
static void verify_blocks(struct disk *d, uint64_t first, uint64_t count)
{
	if (disk_io(d, 0, first, count))
		return;
	for (uint64_t i = 0; i < count; i++) {
		const uint64_t *p = d->chunk + i * PAGE_WORDS;
		uint64_t block = first + i;

		for (uint64_t w = 0; w < PAGE_WORDS; w++) {
			if (p[w] == expected_word(DISK_KEY(block), d->generations[block], w))
				continue;
			if (d->errors < MAX_REPORTED_ERRORS)
				printf("presplit-guest DISK MISMATCH block=%llu word=%llu generation=%u\n",
				       (unsigned long long)block, (unsigned long long)w, d->generations[block]);
			d->errors++;
			break;
		}
	}
	d->verified += count;
}

/* Generation 0 in every block that does not hold it (a blank image). */
static void disk_format(struct disk *d)
{
	for (uint64_t first = 0; first < d->blocks; first += CHUNK_BLOCKS) {
		uint64_t count = d->blocks - first < CHUNK_BLOCKS ? d->blocks - first : CHUNK_BLOCKS;
		int stale = 0;

		if (disk_io(d, 0, first, count))
			continue;
		for (uint64_t i = 0; i < count && !stale; i++)
			stale = d->chunk[i * PAGE_WORDS] != expected_word(DISK_KEY(first + i), 0, 0) ||
				d->chunk[i * PAGE_WORDS + PAGE_WORDS - 1] !=
				expected_word(DISK_KEY(first + i), 0, PAGE_WORDS - 1);
		if (!stale)
			continue;
		for (uint64_t i = 0; i < count; i++)
			fill_block(d->chunk + i * PAGE_WORDS, first + i, 0);
		disk_io(d, 1, first, count);
	}
}

static int disk_open(struct disk *d, const char *path, uint64_t writes_per_s)
{
	uint64_t bytes = 0;
	struct stat st;

	memset(d, 0, sizeof(*d));
	/* Direct I/O, so a read asks the host's image, not this guest's page cache. */
	d->fd = open(path, O_RDWR | O_DIRECT);
	if (d->fd < 0)
		d->fd = open(path, O_RDWR);	/* a file on a filesystem without O_DIRECT */
	if (d->fd < 0 || fstat(d->fd, &st))
		return -1;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, &bytes))
			return -1;
	} else {
		bytes = (uint64_t)st.st_size;
	}
	d->blocks = bytes / 4096;
	d->mib = bytes >> 20;
	d->writes_per_s = writes_per_s;
	d->generations = calloc(d->blocks ? d->blocks : 1, sizeof(*d->generations));
	if (!d->blocks || !d->generations || posix_memalign((void **)&d->chunk, 4096, CHUNK_BLOCKS * 4096))
		return -1;
	disk_format(d);
	return 0;
}

/* One slice of disk work: this slice's share of the writes, then of a pass. */
static void disk_slice(struct disk *d)
{
	uint64_t chunks = (d->blocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
	uint64_t verify_chunks = (chunks + DISK_PASS_S * SLICES_PER_SECOND - 1) / (DISK_PASS_S * SLICES_PER_SECOND);

	d->write_debt_num += d->writes_per_s;
	while (d->write_debt_num >= SLICES_PER_SECOND) {
		uint64_t block = d->write_cursor;

		d->write_debt_num -= SLICES_PER_SECOND;
		fill_block(d->chunk, block, d->generations[block] + 1);
		if (!disk_io(d, 1, block, 1)) {
			d->generations[block]++;
			d->written++;
		}
		d->write_cursor = (block + 1) % d->blocks;
	}
	for (uint64_t i = 0; i < verify_chunks; i++) {
		uint64_t first = d->verify_cursor;
		uint64_t count = d->blocks - first < CHUNK_BLOCKS ? d->blocks - first : CHUNK_BLOCKS;

		verify_blocks(d, first, count);
		d->verify_cursor = first + count;
		if (d->verify_cursor == d->blocks) {
			d->verify_cursor = 0;
			d->passes++;
		}
	}
}

/* --disk-pattern FILE MIB: a raw image whose every block holds generation 0. */
static int write_disk_pattern(const char *path, uint64_t mib)
{
	FILE *out = fopen(path, "wb");
	uint64_t block_words[PAGE_WORDS];

	if (!out || !mib)
		return 1;
	for (uint64_t block = 0; block < mib * 256; block++) {
		fill_block(block_words, block, 0);
		if (fwrite(block_words, sizeof(block_words), 1, out) != 1)
			return 1;
	}
	return fclose(out) ? 1 : 0;
}

int main(int argc, char **argv)
{
	uint64_t buf_mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 16;
	uint64_t dirty_mib_s = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
	uint64_t pages = buf_mib * 256;
	uint64_t *buf;
	uint32_t *generations;
	uint64_t seq = 0, dirtied_pages = 0, verified_pages = 0, passes = 0;
	uint64_t errors = 0, dirty_cursor = 0, verify_cursor = 0;
	uint64_t start, next_report, slice_ms = 1000 / SLICES_PER_SECOND;
	/* Pages to dirty per slice, carried as a remainder so low rates work. */
	uint64_t dirty_debt_num = 0;
	uint64_t verify_per_slice = (pages + SLICES_PER_SECOND - 1) / SLICES_PER_SECOND;
	struct disk disk = { .fd = -1 };
	char disk_fields[256] = "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "--disk-pattern"))
		return write_disk_pattern(argv[2], strtoull(argv[3], NULL, 10));
	if (argc > 4 && disk_open(&disk, argv[3], strtoull(argv[4], NULL, 10))) {
		printf("presplit-guest FATAL cannot use disk %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	if (pages == 0) {
		printf("presplit-guest FATAL buf_mib must be > 0\n");
		return 1;
	}
	buf = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	generations = calloc(pages, sizeof(*generations));
	if (buf == MAP_FAILED || !generations) {
		printf("presplit-guest FATAL cannot allocate %llu MiB\n",
		       (unsigned long long)buf_mib);
		return 1;
	}
	for (uint64_t page = 0; page < pages; page++)
		write_page(buf, generations, page);

	start = now_ms();
	next_report = start + 1000;
	for (;;) {
		uint64_t slice_end = now_ms() + slice_ms;

		/* Dirty this slice's share of the rate, round-robin. */
		dirty_debt_num += dirty_mib_s * 256;
		while (dirty_debt_num >= SLICES_PER_SECOND) {
			dirty_debt_num -= SLICES_PER_SECOND;
			write_page(buf, generations, dirty_cursor);
			dirty_cursor = (dirty_cursor + 1) % pages;
			dirtied_pages++;
		}
		/*
		 * Verify at most one full pass per second, then sleep: under TCG
		 * a busy guest costs a whole host CPU, and the lab runs several.
		 */
		for (uint64_t i = 0; i < verify_per_slice && now_ms() < slice_end; i++) {
			errors += verify_page(buf, generations, verify_cursor, errors);
			verified_pages++;
			if (++verify_cursor == pages) {
				verify_cursor = 0;
				passes++;
			}
		}
		/*
		 * One clock read per step: with two, the slice can end between
		 * the check and the subtraction, and the unsigned difference
		 * wraps to a sleep of about 71 minutes (a guest under nested TCG
		 * did that, looking hung).
		 */
		if (disk.fd >= 0)
			disk_slice(&disk);
		for (uint64_t now = now_ms(); now < slice_end; now = now_ms())
			usleep(1000 * (slice_end - now));

		if (now_ms() >= next_report) {
			seq++;
			if (disk.fd >= 0)
				snprintf(disk_fields, sizeof(disk_fields),
					 "disk_mib=%llu disk_written_blocks=%llu disk_verified_blocks=%llu "
					 "disk_passes=%llu disk_errors=%llu ",
					 (unsigned long long)disk.mib, (unsigned long long)disk.written,
					 (unsigned long long)disk.verified, (unsigned long long)disk.passes,
					 (unsigned long long)disk.errors);
			printf("presplit-guest seq=%llu up_ms=%llu buf_mib=%llu "
			       "dirty_mib_s=%llu dirtied_mib=%llu verified_pages=%llu "
			       "passes=%llu %serrors=%llu\n",
			       (unsigned long long)seq,
			       (unsigned long long)(now_ms() - start),
			       (unsigned long long)buf_mib,
			       (unsigned long long)dirty_mib_s,
			       (unsigned long long)(dirtied_pages / 256),
			       (unsigned long long)verified_pages,
			       (unsigned long long)passes, disk_fields,
			       (unsigned long long)errors);
			next_report += 1000;
			if (next_report < now_ms())
				next_report = now_ms() + 1000;
		}
	}
}
