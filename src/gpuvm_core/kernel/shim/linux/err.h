/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: negative errno values carried in pointers. */
#ifndef ORACLE_SHIM_ERR_H
#define ORACLE_SHIM_ERR_H
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#define ORACLE_MAX_ERRNO 4095

static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline bool IS_ERR(const void *ptr)
{
	return (uintptr_t)ptr >= (uintptr_t)-ORACLE_MAX_ERRNO;
}

#endif
