"""Core mm: the process address space, its page table, MMU notifiers, hmm and
migrate_vma (mm/mmap.c, mm/mmu_notifier.c, mm/hmm.c, mm/migrate_device.c). Knows
nothing of GPUs: device pages reach their owner through the DevmemOwner Protocol.
"""
