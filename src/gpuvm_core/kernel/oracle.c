// SPDX-License-Identifier: MIT
/*
 * gpuvm_core kernel oracle: a small userspace driver around a kernel tree's
 * own drivers/gpu/drm/drm_gpuvm.c (compiled unchanged against the shim
 * headers next to this file). It plays the part a GPU driver plays in the
 * kernel:
 *
 *  - creates a VM with drm_gpuvm_init() (an optional reserved node),
 *  - asks for op lists with drm_gpuvm_sm_map_ops_create(),
 *    drm_gpuvm_sm_unmap_ops_create(), drm_gpuvm_madvise_ops_create() and
 *    drm_gpuvm_prefetch_ops_create(),
 *  - applies them op by op with drm_gpuva_map(), drm_gpuva_remap() and
 *    drm_gpuva_unmap(), allocating a fresh drm_gpuva for every new mapping
 *    and freeing every removed one, then drm_gpuva_ops_free(),
 *  - looks VAs up with drm_gpuva_find(), _find_first(), _find_prev(),
 *    _find_next() and walks them with drm_gpuvm_for_each_va(),
 *  - times request streams in C (oracle_time), so the kernel's figures
 *    carry no Python overhead.
 *
 * Python loads the built library with ctypes (gpuvm_core/kernel/oracle.py);
 * every function below is its ABI. Written for this project: no kernel code.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/err.h>

#include <drm/drm_gpuvm.h>

unsigned long oracle_warnings;

/* ---------------------------------------------------------------------- */
/* GEM objects: one per handle, for the life of the process. */

struct oracle_objs {
	struct drm_gem_object **slot;
	size_t cap, used;
};

static struct oracle_objs objs;

static size_t obj_hash(u64 id, size_t cap)
{
	u64 h = id * 0x9E3779B97F4A7C15ull;

	return (size_t)(h >> 17) & (cap - 1);
}

static int obj_grow(void)
{
	size_t ncap = objs.cap ? objs.cap * 2 : 64, i;
	struct drm_gem_object **n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (i = 0; i < objs.cap; i++) {
		struct drm_gem_object *o = objs.slot[i];
		size_t j;

		if (!o)
			continue;
		for (j = obj_hash(o->oracle_id, ncap); n[j]; j = (j + 1) & (ncap - 1))
			;
		n[j] = o;
	}
	free(objs.slot);
	objs.slot = n;
	objs.cap = ncap;
	return 0;
}

static struct drm_gem_object *obj_get(u64 id)
{
	struct drm_gem_object *o;
	size_t j;

	if ((objs.used + 1) * 2 > objs.cap && obj_grow())
		return NULL;
	for (j = obj_hash(id, objs.cap); objs.slot[j]; j = (j + 1) & (objs.cap - 1))
		if (objs.slot[j]->oracle_id == id)
			return objs.slot[j];
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	drm_gem_private_object_init(NULL, o, 0);
	o->oracle_id = id;
	objs.slot[j] = o;
	objs.used++;
	return o;
}

/* ---------------------------------------------------------------------- */
/* VMs */

struct oracle_vm {
	struct drm_gpuvm gpuvm;
	struct drm_device drm;
	struct drm_gem_object r_obj;
	u64 nvas;
};

static void oracle_vm_free(struct drm_gpuvm *gpuvm)
{
	free(container_of(gpuvm, struct oracle_vm, gpuvm));
}

static const struct drm_gpuvm_ops oracle_vm_ops = {
	.vm_free = oracle_vm_free,
};

struct oracle_vm *oracle_vm_create(u64 start, u64 range, u64 reserve_addr, u64 reserve_range)
{
	struct oracle_vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	drm_gem_private_object_init(&vm->drm, &vm->r_obj, 0);
	drm_gpuvm_init(&vm->gpuvm, "gpuvm_core-oracle", 0, &vm->drm, &vm->r_obj,
		       start, range, reserve_addr, reserve_range, &oracle_vm_ops);
	return vm;
}

void oracle_vm_destroy(struct oracle_vm *vm)
{
	struct drm_gpuva *va, *next;

	drm_gpuvm_for_each_va_safe(va, next, &vm->gpuvm) {
		if (va == &vm->gpuvm.kernel_alloc_node)
			continue;
		drm_gpuva_remove(va);
		free(va);
	}
	/*
	 * drm_gpuvm_init() leaves the reserved node out of the tree when its
	 * range overflows (it only WARNs), yet drm_gpuvm_fini() removes it
	 * whenever its range is non-zero: removing a node that was never
	 * inserted corrupts memory. A driver must not tear such a VM down as
	 * is; the oracle clears the range of a reserved node that is not in
	 * the tree (va.vm is set only by a successful insert) first.
	 */
	if (vm->gpuvm.kernel_alloc_node.va.range && !vm->gpuvm.kernel_alloc_node.vm)
		vm->gpuvm.kernel_alloc_node.va.range = 0;
	/* drm_gpuvm_put() -> drm_gpuvm_free() -> drm_gpuvm_fini() + vm_free. */
	drm_gpuvm_put(&vm->gpuvm);
}

unsigned long oracle_warnings_take(void)
{
	unsigned long w = oracle_warnings;

	oracle_warnings = 0;
	return w;
}

u64 oracle_vm_len(struct oracle_vm *vm)
{
	return vm->nvas;
}

/* ---------------------------------------------------------------------- */
/* Op lists */

enum { ORACLE_MAP = 0, ORACLE_UNMAP = 1, ORACLE_MADVISE = 2, ORACLE_PREFETCH = 3 };

/* One op as ORACLE_OP_WORDS u64: type, then three VA slots of
 * (present, addr, range, has_obj, obj, offset), then keep. Map: slot 0.
 * Remap: prev in slot 0, next in slot 1, the removed VA in slot 2. Unmap:
 * slot 2. Prefetch: slot 0. */
#define ORACLE_OP_WORDS 20

static void put_slot(u64 *w, u64 addr, u64 range, struct drm_gem_object *obj, u64 offset)
{
	w[0] = 1;
	w[1] = addr;
	w[2] = range;
	w[3] = obj != NULL;
	w[4] = obj ? obj->oracle_id : 0;
	w[5] = offset;
}

static void put_map(u64 *w, const struct drm_gpuva_op_map *m)
{
	if (m)
		put_slot(w, m->va.addr, m->va.range, m->gem.obj, m->gem.offset);
}

static void put_va(u64 *w, const struct drm_gpuva *va)
{
	put_slot(w, va->va.addr, va->va.range, va->gem.obj, va->gem.offset);
}

int oracle_ops_create(struct oracle_vm *vm, int kind, u64 addr, u64 range, int has_obj,
		      u64 obj_id, u64 offset, struct drm_gpuva_ops **out)
{
	struct drm_gpuva_ops *ops;

	*out = NULL;
	if (kind == ORACLE_MAP || kind == ORACLE_MADVISE) {
		struct drm_gpuvm_map_req req;

		memset(&req, 0, sizeof(req));
		req.map.va.addr = addr;
		req.map.va.range = range;
		req.map.gem.obj = has_obj ? obj_get(obj_id) : NULL;
		req.map.gem.offset = offset;
		if (has_obj && !req.map.gem.obj)
			return -ENOMEM;
		ops = kind == ORACLE_MAP ? drm_gpuvm_sm_map_ops_create(&vm->gpuvm, &req)
					 : drm_gpuvm_madvise_ops_create(&vm->gpuvm, &req);
	} else if (kind == ORACLE_UNMAP) {
		ops = drm_gpuvm_sm_unmap_ops_create(&vm->gpuvm, addr, range);
	} else if (kind == ORACLE_PREFETCH) {
		ops = drm_gpuvm_prefetch_ops_create(&vm->gpuvm, addr, range);
	} else {
		return -EINVAL;
	}
	if (IS_ERR(ops))
		return (int)PTR_ERR(ops);
	*out = ops;
	return 0;
}

u64 oracle_ops_read(struct drm_gpuva_ops *ops, u64 *buf, u64 cap)
{
	struct drm_gpuva_op *op;
	u64 n = 0;

	drm_gpuva_for_each_op(op, ops) {
		if (n < cap) {
			u64 *w = buf + n * ORACLE_OP_WORDS;

			memset(w, 0, ORACLE_OP_WORDS * sizeof(u64));
			w[0] = op->op;
			switch (op->op) {
			case DRM_GPUVA_OP_MAP:
				put_map(w + 1, &op->map);
				break;
			case DRM_GPUVA_OP_REMAP:
				put_map(w + 1, op->remap.prev);
				put_map(w + 7, op->remap.next);
				put_va(w + 13, op->remap.unmap->va);
				w[19] = op->remap.unmap->keep;
				break;
			case DRM_GPUVA_OP_UNMAP:
				put_va(w + 13, op->unmap.va);
				w[19] = op->unmap.keep;
				break;
			case DRM_GPUVA_OP_PREFETCH:
				put_va(w + 1, op->prefetch.va);
				break;
			default:
				break;
			}
		}
		n++;
	}
	return n;
}

void oracle_ops_free(struct oracle_vm *vm, struct drm_gpuva_ops *ops)
{
	if (ops)
		drm_gpuva_ops_free(&vm->gpuvm, ops);
}

/* A fresh VA mapped by drm_gpuva_map()/_remap() is in the tree exactly when
 * its insert succeeded (drm_gpuva_insert() sets va->vm only then); the
 * kernel helpers ignore a refused insert, the oracle counts and frees it. */
static u64 settle(struct oracle_vm *vm, struct drm_gpuva *va)
{
	if (va->vm)
		return vm->nvas++, 0;
	free(va);
	return 1;
}

/* Apply an op list the way a driver does, then free it. Returns the number of
 * inserts the tree refused, or -ENOMEM (nothing is then half-applied: every
 * VA needed is allocated before the first op runs). */
long oracle_ops_apply(struct oracle_vm *vm, struct drm_gpuva_ops *ops)
{
	struct drm_gpuva_op *op;
	struct drm_gpuva **fresh;
	size_t need = 0, k = 0;
	long failed = 0;

	drm_gpuva_for_each_op(op, ops)
		need += op->op == DRM_GPUVA_OP_MAP ? 1 : op->op == DRM_GPUVA_OP_REMAP ? 2 : 0;
	fresh = calloc(need ? need : 1, sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	for (k = 0; k < need; k++) {
		fresh[k] = calloc(1, sizeof(struct drm_gpuva));
		if (!fresh[k]) {
			while (k)
				free(fresh[--k]);
			free(fresh);
			return -ENOMEM;
		}
	}
	k = 0;
	drm_gpuva_for_each_op(op, ops) {
		switch (op->op) {
		case DRM_GPUVA_OP_MAP: {
			struct drm_gpuva *va = fresh[k++];

			drm_gpuva_map(&vm->gpuvm, va, &op->map);
			failed += settle(vm, va);
			break;
		}
		case DRM_GPUVA_OP_REMAP: {
			struct drm_gpuva *prev = fresh[k++], *next = fresh[k++];
			struct drm_gpuva *old = op->remap.unmap->va;

			drm_gpuva_remap(prev, next, &op->remap);
			vm->nvas--;
			free(old);
			if (op->remap.prev)
				failed += settle(vm, prev);
			else
				free(prev);
			if (op->remap.next)
				failed += settle(vm, next);
			else
				free(next);
			break;
		}
		case DRM_GPUVA_OP_UNMAP: {
			struct drm_gpuva *old = op->unmap.va;

			drm_gpuva_unmap(&op->unmap);
			vm->nvas--;
			free(old);
			break;
		}
		default:
			break;
		}
	}
	free(fresh);
	drm_gpuva_ops_free(&vm->gpuvm, ops);
	return failed;
}

/* ---------------------------------------------------------------------- */
/* State and lookups */

/* Every VA but the reserved node, in list (address) order, 5 u64 each:
 * addr, range, has_obj, obj, offset. Returns the count (may exceed cap). */
u64 oracle_vm_state(struct oracle_vm *vm, u64 *buf, u64 cap)
{
	struct drm_gpuva *va;
	u64 n = 0;

	drm_gpuvm_for_each_va(va, &vm->gpuvm) {
		if (va == &vm->gpuvm.kernel_alloc_node)
			continue;
		if (n < cap) {
			u64 *w = buf + n * 5;

			w[0] = va->va.addr;
			w[1] = va->va.range;
			w[2] = va->gem.obj != NULL;
			w[3] = va->gem.obj ? va->gem.obj->oracle_id : 0;
			w[4] = va->gem.offset;
		}
		n++;
	}
	return n;
}

/* kind 0: drm_gpuva_find(a, b); 1: drm_gpuva_find_first(a, b);
 * 2: drm_gpuva_find_prev(a); 3: drm_gpuva_find_next(a). Fills out[0..4] as
 * oracle_vm_state and returns 1 when found (the reserved node included, as
 * the kernel returns it; out[0..1] let the caller tell). */
int oracle_find(struct oracle_vm *vm, int kind, u64 a, u64 b, u64 *out)
{
	struct drm_gpuva *va;

	switch (kind) {
	case 0: va = drm_gpuva_find(&vm->gpuvm, a, b); break;
	case 1: va = drm_gpuva_find_first(&vm->gpuvm, a, b); break;
	case 2: va = drm_gpuva_find_prev(&vm->gpuvm, a); break;
	case 3: va = drm_gpuva_find_next(&vm->gpuvm, a); break;
	default: return -EINVAL;
	}
	if (!va)
		return 0;
	out[0] = va->va.addr;
	out[1] = va->va.range;
	out[2] = va->gem.obj != NULL;
	out[3] = va->gem.obj ? va->gem.obj->oracle_id : 0;
	out[4] = va->gem.offset;
	return 1;
}

/* ---------------------------------------------------------------------- */
/* Request streams, timed in C */

enum { ORACLE_LOOKUP = 255 };

static double now_ns(int clock_kind)
{
	struct timespec ts;

	clock_gettime(clock_kind ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Issue m requests (codes: 0 map, 1 unmap, 2 madvise, 255 find_first(addr,
 * range)); obj < 0 is "no object". Each request is one ops_create + apply +
 * free, as a driver does. Returns the elapsed nanoseconds (clock_kind 0:
 * CLOCK_MONOTONIC, 1: this thread's CPU time) and stores the ops applied (or
 * lookups that hit) in *result and refused requests in *refused. */
double oracle_run(struct oracle_vm *vm, const u8 *codes, const u64 *addr, const u64 *range,
		  const s64 *obj, const u64 *offset, u64 m, int clock_kind, u64 *result,
		  u64 *refused)
{
	double t0 = now_ns(clock_kind);
	u64 total = 0, bad = 0, i;

	for (i = 0; i < m; i++) {
		struct drm_gpuva_ops *ops;
		struct drm_gpuva_op *op;
		int ret;

		if (codes[i] == ORACLE_LOOKUP) {
			total += drm_gpuva_find_first(&vm->gpuvm, addr[i], range[i]) != NULL;
			continue;
		}
		ret = oracle_ops_create(vm, codes[i], addr[i], range[i], obj[i] >= 0,
					(u64)obj[i], offset[i], &ops);
		if (ret) {
			bad++;
			continue;
		}
		drm_gpuva_for_each_op(op, ops)
			total++;
		oracle_ops_apply(vm, ops);
	}
	*result = total;
	*refused = bad;
	return now_ns(clock_kind) - t0;
}
