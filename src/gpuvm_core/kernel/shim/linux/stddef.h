/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: the C library's stddef is all that is needed. */
#ifndef ORACLE_SHIM_STDDEF_H
#define ORACLE_SHIM_STDDEF_H
#include <stddef.h>
#include <linux/types.h>
#endif
