#!/usr/bin/env bash
# Download, on a machine with the package index, the wheels that calibration/device_run.sh
# installs on a lent GPU machine that has no network. That machine has torch, nvidia-ml-py,
# numpy, pandas, scipy, pyyaml, typer, rich, matplotlib, pyarrow and jinja2, but not what else
# fleetsim's core needs: simpy and pydantic (with pydantic-core, annotated-types,
# typing-inspection, typing-extensions), nor setuptools for building fleetsim's editable install.
# Wheels only, for manylinux x86_64 and CPython 3.12 (that machine's); the versions the project
# is tested with.
#
#   bash calibration/fetch_wheels.sh [DEST]      DEST: default calibration/wheels (git-ignored)
#
# Environment: PIP (default "python3 -m pip"), PYTHON_VERSION (default 3.12), PLATFORM (default
# manylinux2014_x86_64).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$repo/calibration/wheels}
pip_cmd=${PIP:-python3 -m pip}
packages=(
    simpy==4.1.2
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
    setuptools==80.9.0
)
mkdir -p "$dest"
# shellcheck disable=SC2086  # PIP may be a command with arguments
$pip_cmd download --only-binary=:all: --platform "${PLATFORM:-manylinux2014_x86_64}" \
    --python-version "${PYTHON_VERSION:-3.12}" -d "$dest" "${packages[@]}"
echo "fetch_wheels.sh: wheels for device_run.sh in $dest"
