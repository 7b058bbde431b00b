/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: member pointer -> enclosing structure. */
#ifndef ORACLE_SHIM_CONTAINER_OF_H
#define ORACLE_SHIM_CONTAINER_OF_H
#include <stddef.h>

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
