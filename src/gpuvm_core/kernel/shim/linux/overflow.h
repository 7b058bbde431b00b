/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: checked addition via the compiler builtin. */
#ifndef ORACLE_SHIM_OVERFLOW_H
#define ORACLE_SHIM_OVERFLOW_H

#define check_add_overflow(a, b, d) __builtin_add_overflow((a), (b), (d))

#endif
