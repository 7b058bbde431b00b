"""pysvm: a model of the Intel Xe driver's VM, madvise and SVM layers on gpuvm_core.

Start with :class:`World`: one simulated machine, with one method per trace event
(docs/python-api.md). The typed objects it holds carry the kernel's names.
"""

from pysvm.drm.gpusvm import GpuSvm, SvmRange
from pysvm.drm.pagemap import Pagemap
from pysvm.errors import XeError, errno_name
from pysvm.mm.mmap import Mm, Page
from pysvm.world import EVENTS, SUMMARY_KEYS, World
from pysvm.xe.bo import Bo
from pysvm.xe.device import Device
from pysvm.xe.pagemap import DevicePagemap, PagemapSystem
from pysvm.xe.svm import Svm
from pysvm.xe.vm import Vm
from pysvm.xe.vma import Vma

__version__ = "0.1.0"

__all__ = ["EVENTS", "SUMMARY_KEYS", "Bo", "Device", "DevicePagemap", "GpuSvm", "Mm", "Page",
           "Pagemap", "PagemapSystem", "Svm", "SvmRange", "Vm", "Vma", "World", "XeError",
           "__version__", "errno_name"]
