#define _GNU_SOURCE
#include "floe_sched.h"
#include <errno.h>
#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

int floe_thread_set_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    return pthread_setname_np(pthread_self(), truncated);
}

int floe_thread_id(void) { return (int)syscall(SYS_gettid); }

int floe_thread_set_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

int floe_thread_get_nice(int *nice) {
    errno = 0;
    int value = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (value == -1 && errno != 0) return -1;
    *nice = value;
    return 0;
}

int floe_thread_set_policy(int policy) {
    struct sched_param param = { .sched_priority = 0 };
    return sched_setscheduler((pid_t)syscall(SYS_gettid), policy, &param);
}

int floe_thread_get_policy(void) { return sched_getscheduler((pid_t)syscall(SYS_gettid)); }
#else
int floe_thread_set_name(const char *name) { (void)name; return ENOSYS; }
int floe_thread_id(void) { return -1; }
int floe_thread_set_nice(int nice) { (void)nice; errno = ENOSYS; return -1; }
int floe_thread_get_nice(int *nice) { (void)nice; errno = ENOSYS; return -1; }
int floe_thread_set_policy(int policy) { (void)policy; errno = ENOSYS; return -1; }
int floe_thread_get_policy(void) { errno = ENOSYS; return -1; }
#endif
