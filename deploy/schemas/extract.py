#!/usr/bin/env python3
"""Writes the JSON schemas tests/test_deploy.py validates KServe resources against.

Usage: extract.py KSERVE_CHECKOUT TAG   (a git checkout of github.com/kserve/kserve)

From TAG it reads the CRDs (config/crd/full/serving.kserve.io_*.yaml) and writes each served
version's openAPIV3Schema, unchanged, as <kind>-<group>-<version>.json (kubeconform's naming);
and from config/runtimes/*.yaml the model formats and protocols of KServe's stock
ClusterServingRuntimes (stock-runtimes.json), which the admission-webhook checks need.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import yaml

CRDS = ["clusterservingruntimes", "inferenceservices"]
HERE = pathlib.Path(__file__).resolve().parent


def git_show(repo: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def main(repo: str, tag: str) -> None:
    commit = subprocess.run(["git", "-C", repo, "rev-list", "-n1", tag], check=True,
                            capture_output=True, text=True).stdout.strip()
    for name in CRDS:
        crd = next(d for d in yaml.safe_load_all(
            git_show(repo, tag, f"config/crd/full/serving.kserve.io_{name}.yaml")) if d)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            out = HERE / f"{kind.lower()}-{group}-{version['name']}.json"
            # Compact: the InferenceService schema is 1.6 MB indented, 0.6 MB like this.
            out.write_text(json.dumps(version["schema"]["openAPIV3Schema"], sort_keys=True,
                                      separators=(",", ":")) + "\n")
            print(f"wrote {out.name}")
    listing = subprocess.run(["git", "-C", repo, "ls-tree", "--name-only", f"{tag}:config/runtimes"],
                             check=True, capture_output=True, text=True).stdout.split()
    runtimes = {}
    for fname in sorted(f for f in listing if f.startswith("kserve-") and f.endswith(".yaml")):
        for doc in yaml.safe_load_all(git_show(repo, tag, f"config/runtimes/{fname}")):
            if doc and doc.get("kind") == "ClusterServingRuntime":
                runtimes[doc["metadata"]["name"]] = {
                    "supportedModelFormats": doc["spec"].get("supportedModelFormats", []),
                    "protocolVersions": doc["spec"].get("protocolVersions", []),
                    "multiModel": doc["spec"].get("multiModel", False),
                }
    (HERE / "stock-runtimes.json").write_text(json.dumps(
        {"kserve": tag, "commit": commit, "source": "config/runtimes/*.yaml", "runtimes": runtimes},
        indent=1, sort_keys=True) + "\n")
    print(f"wrote stock-runtimes.json ({len(runtimes)} runtimes) from {tag} ({commit})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
