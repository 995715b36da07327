#!/usr/bin/env python3
"""Run the same CPU workload under slm-energy and CodeCarbon's OfflineEmissionsTracker, side by
side, and compare their energy figures (issue: "our CPU estimate agrees with CodeCarbon's
OfflineEmissionsTracker within 5%").

Usage (from the repository root):
    python3 benches/codecarbon_compare.py [--seconds 30] [--country FRA] [--venv DIR]

What it does:
1. creates a virtual environment (``python3 -m venv``) and installs ``codecarbon==3.3.2`` there
   (the release whose TDP table, RAM model and grid data slm-energy follows), then re-runs
   itself with that interpreter;
2. builds ``examples/energy_workload`` (cargo, outside the measured window);
3. starts ``OfflineEmissionsTracker(country_iso_code=..., measure_power_secs=1,
   tracking_mode="machine")``, runs the example as a subprocess (it spins every CPU for
   ``--seconds`` under an ``EnergyTracker`` with the default meters, sampling every second, and
   prints its JSON report), then stops the tracker;
4. prints both energies per component, the ratios, and the assumptions behind each side (TDP,
   load curve, RAM power, what was measured), and exits 1 when the CPU or total energy differs
   by more than ``--tolerance`` (5 %).

Both sides integrate power over slightly different windows: CodeCarbon's includes starting the
subprocess (tens of ms). The script compares energies and also mean power (energy over each
side's own duration), which is insensitive to that offset.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from pyvenv import ensure_venv

CODECARBON = "codecarbon==3.3.2"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_example(cargo_args):
    cmd = ["cargo", "build", "--quiet", "--example", "energy_workload", *cargo_args]
    subprocess.run(cmd, cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    profile = "release" if "--release" in cargo_args else "debug"
    return os.path.join(target, profile, "examples", "energy_workload")


def ours_by_component(report):
    """Joules and methods per component from the tracker's JSON report."""
    out = {}
    for m in report["meters"]:
        e = m.get("energy")
        if e is None:
            continue
        c = m["component"]
        joules, methods = out.get(c, (0.0, []))
        out[c] = (joules + e["joules"], methods + [json.dumps(e["method"])])
    return out


def ratio(a, b):
    return a / b if b else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="workload length")
    p.add_argument("--country", default="FRA", help="ISO 3166-1 alpha-3 code for both trackers")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    p.add_argument("--venv", default=os.path.join(target, "codecarbon-venv"),
                   help="virtual environment for codecarbon (default: inside the cargo target dir)")
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=None, help="workload threads (default: all CPUs)")
    p.add_argument("--release", action="store_true", help="build the example with --release")
    args = p.parse_args()
    ensure_venv(args.venv, [CODECARBON], "codecarbon")

    import codecarbon
    from codecarbon import OfflineEmissionsTracker

    binary = build_example(["--release"] if args.release else [])
    cmd = [binary, "--seconds", str(args.seconds), "--country", args.country]
    if args.threads:
        cmd += ["--threads", str(args.threads)]

    with tempfile.TemporaryDirectory() as out_dir:
        tracker = OfflineEmissionsTracker(
            country_iso_code=args.country,
            measure_power_secs=1,
            tracking_mode="machine",
            output_dir=out_dir,
            log_level="error",
            save_to_file=True,
        )
        tracker.start()
        t0 = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        cc_wall = time.monotonic() - t0
        tracker.stop()
        data = tracker.final_emissions_data
        cc_hw = {type(h).__name__: h for h in tracker._hardware}

    report = json.loads(run.stdout)
    ours = ours_by_component(report)
    our_wall = report["wall_seconds"]
    cc = {
        "cpu": data.cpu_energy * 3.6e6,
        "ram": data.ram_energy * 3.6e6,
        "gpu": data.gpu_energy * 3.6e6,
    }
    our_cpu = ours.get("cpu", (0.0, []))[0]
    our_ram = sum(ours.get(c, (0.0, []))[0] for c in ("ram", "dram"))
    our_gpu = ours.get("gpu", (0.0, []))[0]
    our_total = our_cpu + our_ram + our_gpu
    cc_total = data.energy_consumed * 3.6e6

    print(f"workload: {args.seconds:.0f} s on {args.threads or os.cpu_count()} threads, "
          f"CPU model {data.cpu_model!r}, {data.cpu_count:.0f} logical CPUs, "
          f"{data.ram_total_size:.1f} GB RAM, codecarbon {codecarbon.__version__}")
    print(f"{'':10}{'slm-energy':>14}{'CodeCarbon':>14}{'ratio':>8}")
    rows = [
        ("CPU J", our_cpu, cc["cpu"]),
        ("RAM J", our_ram, cc["ram"]),
        ("GPU J", our_gpu, cc["gpu"]),
        ("total J", our_total, cc_total),
        ("seconds", our_wall, data.duration),
        ("CPU W", our_cpu / our_wall, cc["cpu"] / data.duration),
        ("RAM W", our_ram / our_wall, cc["ram"] / data.duration),
    ]
    for name, a, b in rows:
        print(f"{name:10}{a:14.2f}{b:14.2f}{ratio(a, b):8.4f}")

    print("\nwhere the figures come from:")
    for m in report["meters"]:
        print(f"  slm-energy {m['name']} ({m['component']}): {json.dumps(m.get('method'))}")
    cpu_hw = cc_hw.get("CPU")
    ram_hw = cc_hw.get("RAM")
    if cpu_hw is not None:
        print(f"  CodeCarbon CPU: mode {getattr(cpu_hw, '_mode', '?')}, TDP "
              f"{getattr(cpu_hw, '_tdp', '?')} W, tracking mode {data.tracking_mode}, "
              f"mean CPU load {data.cpu_utilization_percent:.1f} %")
    if ram_hw is not None:
        print(f"  CodeCarbon RAM: {data.ram_power:.2f} W for {data.ram_total_size:.1f} GB")
    for issue in report.get("issues", []):
        print(f"  slm-energy issue: {issue['source']}: {issue['message']} ({issue['count']}x)")
    grid = report["config"]["carbon"]["grams_co2e_per_kwh"]
    print(f"  emissions: slm-energy {our_total / 3.6e6 * grid:.4f} g at {grid} gCO2e/kWh "
          f"({report['config']['carbon']['source']}); CodeCarbon {data.emissions * 1000:.4f} g "
          f"({data.country_name})")
    print(f"  (subprocess wall time as seen by this script: {cc_wall:.2f} s)")

    cpu_ratio = ratio(our_cpu / our_wall, cc["cpu"] / data.duration)
    total_ratio = ratio(our_total / our_wall, cc_total / data.duration)
    ok = abs(cpu_ratio - 1) <= args.tolerance and abs(total_ratio - 1) <= args.tolerance
    verdict = "within" if ok else "OUTSIDE"
    print(f"\nmean-power ratio CPU {cpu_ratio:.4f}, total {total_ratio:.4f}: "
          f"{verdict} the {args.tolerance:.0%} tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
