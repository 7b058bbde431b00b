"""Generic DRM helpers: drm_gpusvm (gpusvm, gpusvm_notifier), drm_pagemap (pagemap)
and drm_pagemap_util (pagemap_util), drivers/gpu/drm/. They call the driver only
through the Protocols they declare (GpuSvmOps, PagemapProvider, PagemapSubsystem).
"""
