/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: locks and lockdep. The oracle runs one thread per
 * VM, so taking a lock does nothing and every "is this lock held" assertion
 * holds.
 */
#ifndef ORACLE_SHIM_SPINLOCK_H
#define ORACLE_SHIM_SPINLOCK_H

typedef struct {
	int unused;
} spinlock_t;

struct mutex {
	int unused;
};

#define spin_lock_init(l) ((void)(l))
#define spin_lock(l) ((void)(l))
#define spin_unlock(l) ((void)(l))
#define lockdep_assert_held(l) ((void)(l))
#define lockdep_assert(c) ((void)0)
#define might_sleep() ((void)0)

#endif
