/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: userspace stand-in for the compiler helpers the
 * DRM GPUVM sources use (branch hints, once-accessors, attributes).
 * Written for this project; it contains no kernel code.
 */
#ifndef ORACLE_SHIM_COMPILER_H
#define ORACLE_SHIM_COMPILER_H

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#ifndef __always_inline
#define __always_inline inline __attribute__((__always_inline__))
#endif
#define __maybe_unused __attribute__((__unused__))
#define __must_check __attribute__((__warn_unused_result__))
#define __rcu
#define __force
#define __init
#define __exit
#define noinline __attribute__((__noinline__))
#define typeof_member(T, m) typeof(((T *)0)->m)
/* Single-threaded userspace: a plain volatile access is all a once-accessor needs. */
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, val) do { *(volatile typeof(x) *)&(x) = (val); } while (0)
#define barrier() __asm__ __volatile__("" ::: "memory")

#endif
