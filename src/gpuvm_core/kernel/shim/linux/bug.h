/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: kernel warnings. A WARN does not stop the kernel,
 * so here it only counts (oracle_warnings, read back by the recorder as the
 * vector field "warnings") and evaluates to its condition like the kernel's.
 */
#ifndef ORACLE_SHIM_BUG_H
#define ORACLE_SHIM_BUG_H

extern unsigned long oracle_warnings;

#define WARN(cond, ...) ({ int __w = !!(cond); if (__w) oracle_warnings++; __w; })
#define WARN_ON(cond) WARN(cond, "")
#define WARN_ON_ONCE(cond) WARN(cond, "")
#define BUG_ON(cond) do { if (cond) __builtin_trap(); } while (0)

#endif
