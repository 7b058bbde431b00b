/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: the general kernel helpers drm_gpuvm.c reaches through <linux/mm.h>. */
#ifndef ORACLE_SHIM_MM_H
#define ORACLE_SHIM_MM_H
#include <string.h>
#include <linux/types.h>
#include <linux/bug.h>
#include <linux/err.h>
#include <linux/kref.h>
#include <linux/overflow.h>
#include <linux/slab.h>

#define max(a, b) ((a) > (b) ? (a) : (b))
#define min(a, b) ((a) < (b) ? (a) : (b))

#endif
