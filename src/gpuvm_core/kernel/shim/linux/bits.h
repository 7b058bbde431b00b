/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: single-bit masks. */
#ifndef ORACLE_SHIM_BITS_H
#define ORACLE_SHIM_BITS_H

#define BIT(n) (1UL << (n))

#endif
