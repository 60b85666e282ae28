"""Accuracy of the MLP digits demo over training seeds, and the tile balance of every preset.

``python scripts/mlp_digits_seeds.py [--seeds N] [--config NAME]`` trains the 64-128-64-10
network with seeds 0 .. N-1 (openmaia.sdk.mlp.run_mlp: fixed split, 450 test samples), runs
every recipe on the golden backend, and prints a markdown table: FP32 accuracy, each recipe's
accuracy and its difference, and whether the logits were bit-exact against the numpy reference
chain; then the mean over the seeds. ``--balance`` prints the balance table of
openmaia.sdk.report (peak MACs a cycle over peak HBM bytes a cycle, per preset and format pair).
"""

import argparse

from openmaia.sdk.mlp import RECIPES, run_mlp
from openmaia.sdk.report import balance_table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--config", default="default")
    parser.add_argument("--balance", action="store_true")
    args = parser.parse_args()
    if args.balance:
        print(balance_table())
        return
    names = list(RECIPES)
    print("| seed | FP32 | " + " | ".join(f"{n} ({RECIPES[n].description})" for n in names)
          + " | logits bit-exact |")
    print("|---:|---:|" + "---:|" * len(names) + "---|")
    sums = {n: 0.0 for n in ["fp32"] + names}
    for seed in range(args.seeds):
        report = run_mlp(args.config, seed=seed, recipes=names)
        fp32 = report["fp32"]["accuracy"]
        sums["fp32"] += fp32
        cells = []
        for run in report["runs"]:
            sums[run["recipe"]] += run["accuracy"]
            cells.append(f"{run['accuracy']:.2%} ({run['accuracy_vs_fp32']:+.2%})")
        print(f"| {seed} | {fp32:.2%} | " + " | ".join(cells) + " | "
              + ("yes" if report["passed"] else "NO") + " |", flush=True)
    mean = {n: s / args.seeds for n, s in sums.items()}
    print(f"| mean | {mean['fp32']:.2%} | " + " | ".join(
        f"{mean[n]:.2%} ({mean[n] - mean['fp32']:+.2%})" for n in names) + " | |")


if __name__ == "__main__":
    main()
