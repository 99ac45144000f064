#define _GNU_SOURCE
#include "floe_io.h"
#include <errno.h>
#include <fcntl.h>

int floe_writeback_start(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}

int floe_writeback_wait(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return sync_file_range(fd, offset, length,
                           SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}

#if defined(__GLIBC__)
#include <malloc.h>
#include <stdlib.h>
#endif

int floe_malloc_configure(long mmap_threshold, int arenas) {
#if defined(__GLIBC__)
    if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL) mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
    if (getenv("MALLOC_ARENA_MAX") == NULL) mallopt(M_ARENA_MAX, arenas);
    return 0;
#else
    (void)mmap_threshold; (void)arenas;
    return -1;
#endif
}
