/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: reference counts (single threaded, plain integers). */
#ifndef ORACLE_SHIM_KREF_H
#define ORACLE_SHIM_KREF_H
#include <stdbool.h>

struct kref {
	unsigned int count;
};

static inline void kref_init(struct kref *k) { k->count = 1; }
static inline void kref_get(struct kref *k) { k->count++; }
static inline bool kref_get_unless_zero(struct kref *k)
{
	if (!k->count)
		return false;
	k->count++;
	return true;
}
static inline int kref_put(struct kref *k, void (*release)(struct kref *))
{
	if (--k->count == 0) {
		release(k);
		return 1;
	}
	return 0;
}

#endif
