"""The human-readable summary of a workload run.

Kernel: none.
"""

from __future__ import annotations

from pysvm.sim.workload import fmt_bytes
from pysvm.sim.workloads.base import WorkloadResult

__all__ = ["format_workload_summary"]

def _phase_line(name: str, events: int, c: dict[str, int]) -> str:
    return (f"    {name:<28} {events:>7} ev  faults {c.get('faults', 0):>6}  "
            f"to VRAM {fmt_bytes(c.get('bytes_to_vram', 0)):>10}  "
            f"to sys {fmt_bytes(c.get('bytes_to_system', 0)):>10}  "
            f"evict {c.get('evictions', 0):>5}")


def format_workload_summary(res: WorkloadResult) -> str:
    """Counters, thrash ratio, per-phase lines and the data check, one item per line."""
    cfg, c, s = res.config, res.counters, res.sim
    devs = f"{res.devices} discrete device{'s' if res.devices > 1 else ''}"
    if res.tiles > 1:
        devs += f" x {res.tiles} tiles"
    lines = [
        f"pysvm simulate --workload {cfg.workload}: seed {cfg.seed}, profile {cfg.profile}, "
        f"{devs} x {res.vram_mib} MiB VRAM, working set {fmt_bytes(res.working_set)}, "
        f"{res.passes} pass{'es' if res.passes != 1 else ''}",
        f"  events        {s['events']} in {s['wall_s']:.2f} s ({s['events_per_s']} events/s)",
        f"  GPU faults    {c['faults']} (retries {c['retries']}, failed {c['faults_failed']})",
        f"  migrations    to VRAM {c['migrations_to_vram']} ({fmt_bytes(c['bytes_to_vram'])}), "
        f"to system {c['migrations_to_system']} ({fmt_bytes(c['bytes_to_system'])})",
        f"  evictions     {c['evictions']} VRAM allocations evicted under pressure",
        f"  thrash        {res.thrash_ratio:.2f} x working set migrated (both ways)",
        f"  GC            {c['gc_runs']} runs",
    ]
    failed = {k[len("gpu_atomics_failed_"):]: v for k, v in res.stats.items()
              if k.startswith("gpu_atomics_failed_")}
    if failed:
        lines.append("  refused       GPU atomics whose range could not move to VRAM: "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(failed.items())))
    touched = res.stats.get("gpu_bytes_touched")
    if touched:
        lines.append(f"  gather        {fmt_bytes(touched)} touched by the GPU, "
                     f"{res.counters['bytes_to_vram'] / touched:.1f} x that migrated to VRAM")
    lines.append("  phases")
    lines.extend(_phase_line(p.name, p.events, p.counters) for p in res.phases)
    if res.unexpected:
        lines.append(f"  UNEXPECTED    {len(res.unexpected)} events failed; first:")
        lines.extend(f"    {m}" for m in res.unexpected[:5])
    if not res.mismatches:
        lines.append(f"  DATA INTEGRITY VERIFIED: {s['pages_verified']} pages in "
                     f"{s['reads_verified']} reads matched the last value written")
    else:
        lines.append(f"  DATA INTEGRITY FAILED: {len(res.mismatches)} reads differ from the "
                     "last value written; first:")
        lines.extend(f"    {m}" for m in res.mismatches[:10])
    return "\n".join(lines)
