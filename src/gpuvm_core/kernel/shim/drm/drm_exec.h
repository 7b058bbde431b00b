/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: the multi-object locking context. Nothing is ever
 * contended in the oracle, so the retry loop runs its body once and locking an
 * object always succeeds.
 */
#ifndef ORACLE_SHIM_DRM_EXEC_H
#define ORACLE_SHIM_DRM_EXEC_H
#include <linux/types.h>

struct drm_gem_object;

struct drm_exec {
	u32 flags;
	unsigned int num_objects;
	struct drm_gem_object **objects;
};

#define DRM_EXEC_INTERRUPTIBLE_WAIT (1u << 0)
#define DRM_EXEC_IGNORE_DUPLICATES (1u << 1)

static inline void drm_exec_init(struct drm_exec *exec, u32 flags, unsigned int nr)
{
	(void)nr;
	exec->flags = flags;
	exec->num_objects = 0;
	exec->objects = NULL;
}

static inline void drm_exec_fini(struct drm_exec *exec) { (void)exec; }

static inline int drm_exec_lock_obj(struct drm_exec *exec, struct drm_gem_object *obj)
{
	(void)exec;
	(void)obj;
	return 0;
}

static inline int drm_exec_prepare_obj(struct drm_exec *exec, struct drm_gem_object *obj,
				       unsigned int num_fences)
{
	(void)num_fences;
	return drm_exec_lock_obj(exec, obj);
}

static inline int drm_exec_prepare_array(struct drm_exec *exec, struct drm_gem_object **objs,
					 unsigned int num_objects, unsigned int num_fences)
{
	(void)exec;
	(void)objs;
	(void)num_objects;
	(void)num_fences;
	return 0;
}

#define drm_exec_until_all_locked(exec) \
	for (int oracle_exec_once__ = ((void)(exec), 1); oracle_exec_once__; oracle_exec_once__ = 0)
#define drm_exec_retry_on_contention(exec) ((void)(exec))
#define drm_exec_for_each_locked_object(exec, index, obj) \
	for ((index) = 0; (index) < (exec)->num_objects && \
	     ((obj) = (exec)->objects[index]); ++(index))

#endif
