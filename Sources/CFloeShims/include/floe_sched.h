#ifndef FLOE_SCHED_H
#define FLOE_SCHED_H

// Per-thread CPU priority, which Swift's Glibc module does not reach cleanly (gettid, the
// scheduling policies). On Linux the nice value is a property of each thread: these act on the
// calling thread only. Elsewhere they fail with ENOSYS.

enum {
    FLOE_SCHED_OTHER = 0,
    FLOE_SCHED_BATCH = 3,
    FLOE_SCHED_IDLE = 5,
};

/// The calling thread's kernel thread id (gettid), or -1 where there is none.
int floe_thread_id(void);
/// Sets the calling thread's nice value. Returns 0, or -1 with errno (lowering it needs privileges).
int floe_thread_set_nice(int nice);
/// Stores the calling thread's nice value in *nice. Returns 0, or -1 with errno.
int floe_thread_get_nice(int *nice);
/// Sets the calling thread's scheduling policy to FLOE_SCHED_OTHER, _BATCH or _IDLE (priority 0).
/// Returns 0, or -1 with errno.
int floe_thread_set_policy(int policy);
/// The calling thread's scheduling policy (one of the FLOE_SCHED_ values or another kernel
/// value), or -1 with errno.
int floe_thread_get_policy(void);

/// Names the calling thread (Linux: at most 15 bytes are kept, as shown in /proc/.../comm).
/// Returns 0, or an error number.
int floe_thread_set_name(const char *name);

#endif
