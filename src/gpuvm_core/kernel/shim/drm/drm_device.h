/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: a DRM device is only a name for warnings here. */
#ifndef ORACLE_SHIM_DRM_DEVICE_H
#define ORACLE_SHIM_DRM_DEVICE_H
#include <linux/bug.h>

struct drm_device {
	int unused;
};

#define drm_WARN(drm, cond, ...) ({ (void)(drm); WARN(cond, __VA_ARGS__); })
#define drm_WARN_ON(drm, cond) ({ (void)(drm); WARN_ON(cond); })

#endif
