/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: RCU pointer publication. The oracle is single
 * threaded, so publishing and reading a pointer are plain stores and loads.
 */
#ifndef ORACLE_SHIM_RCUPDATE_H
#define ORACLE_SHIM_RCUPDATE_H
#include <linux/compiler.h>

#define rcu_assign_pointer(p, v) WRITE_ONCE((p), (v))
#define rcu_dereference_raw(p) READ_ONCE(p)
#define RCU_INIT_POINTER(p, v) ((p) = (v))

#endif
