/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: kernel allocation calls on the C heap. */
#ifndef ORACLE_SHIM_SLAB_H
#define ORACLE_SHIM_SLAB_H
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>

#define GFP_KERNEL 0u
#define GFP_NOWAIT 0u
#define __GFP_NOWARN 0u

static inline void *kzalloc(size_t size, gfp_t flags) { (void)flags; return calloc(1, size); }
static inline void *kmalloc(size_t size, gfp_t flags) { (void)flags; return malloc(size); }
static inline void kfree(const void *p) { free((void *)p); }
static inline void *kmemdup(const void *src, size_t len, gfp_t flags)
{
	void *p = kmalloc(len, flags);

	if (p)
		memcpy(p, src, len);
	return p;
}

#endif
