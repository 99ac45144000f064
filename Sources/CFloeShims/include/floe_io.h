#ifndef FLOE_IO_H
#define FLOE_IO_H
#include <stdint.h>

// Paced writeback for large files written before an fsync (Linux sync_file_range, which Swift's
// Glibc module does not expose). Starting writeback as a file is written, and waiting for the
// previous piece, keeps a large object from arriving at fsync as one burst of dirty pages that
// every other fsync on the disk (the WAL's) would queue behind. Elsewhere both are no-ops.

/// Starts writeback of [offset, offset + length) of fd without waiting. Returns 0 or -1 with errno.
int floe_writeback_start(int fd, int64_t offset, int64_t length);
/// Waits until [offset, offset + length) of fd is written back. Returns 0 or -1 with errno.
int floe_writeback_wait(int fd, int64_t offset, int64_t length);

#endif

#ifndef FLOE_MALLOC_H
#define FLOE_MALLOC_H
/// Makes glibc's allocator give memory back: buffers of at least `mmap_threshold` bytes are
/// mapped and unmapped on their own (glibc otherwise raises this threshold to the largest buffer
/// freed so far, up to 32 MiB, and keeps freed upload and compaction buffers in its heaps), and
/// at most `arenas` heaps are kept. Skipped for each setting the environment already gives
/// (MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX). Returns 0, or -1 where glibc is absent.
int floe_malloc_configure(long mmap_threshold, int arenas);
#endif
