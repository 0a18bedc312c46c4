// What reading a file in the page cache costs through a mapping against pread into a buffer, per
// operation size, on this machine: the measurements behind --io mmap's window (8 MiB from a 2 MiB
// file offset) and its smallest mapped op (1 MiB). Run by bench/map-vs-read.bench.js.
//
//   map-vs-read FILE
//
// Each operation reads every 64-byte line of its range once (a sum), so both ways bring the same
// bytes into the cache; pread also copies them into a buffer. A mapping covers the range widened
// to 2 MiB file offsets (as the engine's do) or, in the "page-aligned" column, to 4 KiB ones.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static volatile uint64_t sink;

static void touch(const unsigned char* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 64) s += *(const uint64_t*)(p + i);
  sink += s;
}

// Seconds to read [off, off + n) by mapping it from `align`-aligned file offsets.
static double mapped(int fd, size_t file_size, size_t off, size_t n, size_t align) {
  const double t0 = now();
  const size_t start = off - off % align;
  size_t end = (off + n + align - 1) / align * align;
  const size_t file_end = (file_size + 4095) / 4096 * 4096;
  if (end > file_end) end = file_end;
  unsigned char* p = mmap(NULL, end - start, PROT_READ, MAP_SHARED, fd, (off_t)start);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  touch(p + (off - start), n);
  munmap(p, end - start);
  return now() - t0;
}

static double copied(int fd, unsigned char* buf, size_t off, size_t n) {
  const double t0 = now();
  if (pread(fd, buf, n, (off_t)off) != (ssize_t)n) {
    perror("pread");
    exit(1);
  }
  touch(buf, n);
  return now() - t0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: map-vs-read FILE\n");
    return 2;
  }
  const int fd = open(argv[1], O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror(argv[1]);
    return 2;
  }
  const size_t file_size = (size_t)st.st_size;
  const size_t max_op = (size_t)16 << 20, two_mib = (size_t)2 << 20;
  if (file_size < 4 * max_op) {
    fprintf(stderr, "%s: want a file of 64 MiB or more\n", argv[1]);
    return 2;
  }
  unsigned char* buf = aligned_alloc(4096, max_op);
  const size_t sizes[] = {(size_t)64 << 10, (size_t)256 << 10, (size_t)1 << 20, (size_t)2 << 20,
                          (size_t)4 << 20,  (size_t)8 << 20,   (size_t)16 << 20};
  printf("| op | pread s/GB | mmap s/GB (2 MiB-aligned) | mmap s/GB (page-aligned) | pread us/op | mmap us/op |\n");
  printf("|--:|--:|--:|--:|--:|--:|\n");
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; ++k) {
    const size_t n = sizes[k];
    const int ops = (int)(((size_t)1 << 30) / n);  // 1 GiB of each
    double tp = 0, tm = 0, tq = 0;
    srand(7);
    for (int i = 0; i < ops; ++i) {
      // Offsets as a tensor's in a safetensors file: anywhere, on an 8-byte boundary.
      const size_t off = ((size_t)rand() * 4096 + (size_t)rand()) % (file_size - n - two_mib) & ~(size_t)7;
      tp += copied(fd, buf, off, n);
      tm += mapped(fd, file_size, off, n, two_mib);
      tq += mapped(fd, file_size, off, n, 4096);
    }
    const double gb = (double)ops * (double)n / 1e9;
    printf("| %zu KiB | %.3f | %.3f | %.3f | %.1f | %.1f |\n", n >> 10, tp / gb, tm / gb, tq / gb, tp / ops * 1e6,
           tm / ops * 1e6);
  }
  free(buf);
  close(fd);
  return 0;
}
