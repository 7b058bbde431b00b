/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: reservation objects. The split/merge code only
 * asserts that a reservation lock is held; there is no fence bookkeeping here.
 */
#ifndef ORACLE_SHIM_DMA_RESV_H
#define ORACLE_SHIM_DMA_RESV_H
#include <stdbool.h>
#include <linux/spinlock.h>

struct dma_fence {
	int unused;
};

struct dma_resv {
	int unused;
};

enum dma_resv_usage {
	DMA_RESV_USAGE_KERNEL,
	DMA_RESV_USAGE_WRITE,
	DMA_RESV_USAGE_READ,
	DMA_RESV_USAGE_BOOKKEEP,
};

#define dma_resv_held(r) ((void)(r), true)
#define dma_resv_assert_held(r) ((void)(r))
#define dma_resv_add_fence(r, f, u) ((void)(r), (void)(f), (void)(u))

#endif
