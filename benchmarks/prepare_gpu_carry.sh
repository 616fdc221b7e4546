#!/usr/bin/env bash
# Prepare what benchmarks/run_gpu.sh needs on a GPU machine without network:
#   .whl/       wheels (CPython 3.12, manylinux x86-64) of the packages of .venv that the machine's
#               image lacks (benchmarks/gpu_image_packages.txt lists what it has);
#   .gpu_data/  the BSD images (Train400, Set12) from ../shared/data/bsd.
# Both folders are git-ignored (.git/info/exclude) and travel as carried paths: name both in the
# device call's carry, e.g. for the BSD run: PHASES=bsd bash benchmarks/run_gpu.sh, carry [.whl, .gpu_data].
# (../shared beside the checkout does not travel; a shared/ folder inside the checkout would.)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "$(git rev-parse --git-dir)/info"
for d in /.whl/ /.gpu_data/; do grep -qx "$d" "$(git rev-parse --git-dir)/info/exclude" 2>/dev/null || echo "$d" >> "$(git rev-parse --git-dir)/info/exclude"; done
.venv/bin/python - <<'PY' > /tmp/jd-gpu-wheels.txt
import re
from importlib.metadata import distributions
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
have = set(open("benchmarks/gpu_image_packages.txt").read().split())
skip = {"jumpdenoise", "bokeh", "xyzservices", "papermill", "ipykernel", "ipython", "nbclient", "nbformat", "s3fs",
        "aiobotocore", "botocore", "debugpy", "jedi", "parso"}  # notebook tools: not run there
for d in distributions():
    n = norm(d.metadata["Name"])
    if n not in have and n not in skip and not n.startswith(("jupyter", "nvidia", "cuda")):
        print(f"{d.metadata['Name']}=={d.version}")
PY
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r /tmp/jd-gpu-wheels.txt
rm -rf .gpu_data/bsd && mkdir -p .gpu_data/bsd && cp -r ../shared/data/bsd/train400 ../shared/data/bsd/set12 .gpu_data/bsd/
du -sh .whl .gpu_data
total=$(du -scm .whl .gpu_data | tail -1 | cut -f1)
[ "$total" -lt 60 ] || echo "warning: .whl + .gpu_data hold $total MiB; a device call carries 64 MiB with the tree"
