#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the cp312 manylinux x86_64 wheels a GPU machine lacks, for
# benchmarks/gpu/check.sh to install there with no network. Run it here, where there is a registry.
# threadpoolctl: a core dependency since --threads; nvidia-ml-py: NVML's energy counter (the energy extra).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
python3 -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d .whl array-api-compat array-api-extra array-api-strict nvmath-python threadpoolctl nvidia-ml-py
ls .whl
