/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: GEM objects. The split/merge code compares object
 * pointers and may link VAs to an object's gpuva list; the oracle gives every
 * object handle one allocated drm_gem_object (oracle_id is the handle).
 */
#ifndef ORACLE_SHIM_DRM_GEM_H
#define ORACLE_SHIM_DRM_GEM_H
#include <linux/types.h>
#include <linux/dma-resv.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <drm/drm_device.h>

struct drm_gem_object;

struct drm_gem_object_funcs {
	void (*free)(struct drm_gem_object *obj);
};

struct drm_gem_object {
	struct kref refcount;
	struct dma_resv *resv;
	struct dma_resv _resv;
	const struct drm_gem_object_funcs *funcs;
	struct {
		struct list_head list;
		struct mutex lock;
	} gpuva;
	u64 oracle_id;
};

static inline void oracle_gem_release_ref(struct kref *k)
{
	struct drm_gem_object *obj = container_of(k, struct drm_gem_object, refcount);

	if (obj->funcs && obj->funcs->free)
		obj->funcs->free(obj);
}

static inline void drm_gem_private_object_init(struct drm_device *dev,
					       struct drm_gem_object *obj, size_t size)
{
	(void)dev;
	(void)size;
	kref_init(&obj->refcount);
	obj->resv = &obj->_resv;
	INIT_LIST_HEAD(&obj->gpuva.list);
}

static inline void drm_gem_object_release(struct drm_gem_object *obj) { (void)obj; }
static inline void drm_gem_object_get(struct drm_gem_object *obj) { kref_get(&obj->refcount); }
static inline void drm_gem_object_put(struct drm_gem_object *obj)
{
	if (obj)
		kref_put(&obj->refcount, oracle_gem_release_ref);
}

#define drm_gem_gpuva_assert_lock_held(gpuvm, obj) ((void)(gpuvm), (void)(obj))
#define drm_gem_for_each_gpuvm_bo(entry__, obj__) \
	list_for_each_entry(entry__, &(obj__)->gpuva.list, list.entry.gem)

#endif
