#!/usr/bin/env bash
# The whole kernel measurement on a lent GPU machine, in one command, in under 8 minutes.
#
#   bash calibration/device_run.sh OUT             measure GPU 0 (the --quick grid) into the folder OUT
#   bash calibration/device_run.sh --dry-run OUT   everything but touching the GPU: exit 0 and a summary
#
# 1. checks the environment (python >= 3.10, timeout, nvidia-smi) and the wheel folder, which
#    calibration/fetch_wheels.sh fills beforehand on a machine with the package index (that
#    machine has torch, numpy, pandas, ... but not simpy or pydantic, and no network);
# 2. installs fleetsim from this working tree without network: a venv that sees the machine's
#    packages (--system-site-packages), `pip install --no-index --find-links WHEELS -e REPO`;
# 3. checks that fleetsim imports and that `fleetsim calibrate --gpu 0 --quick --out ...` parses;
# 4. (not in a dry run) records the GPU: nvidia-smi -q and NVML (no serial numbers, no UUIDs);
#    runs `fleetsim calibrate --gpu 0 --quick` under a hard time budget (`timeout` sends SIGTERM
#    at the budget: the harness stops, fits and writes what it measured, marked partial; SIGKILL
#    30 s later); the samples are checkpointed every 20 cases meanwhile; then compares the profile
#    with its samples (`fleetsim calibrate --report`).
#
# Writes into OUT: profile.yaml, profile.samples.csv, nvidia-smi.txt, nvml-before.json,
# nvml-after.json, report.txt, report.png and device_run.log (everything printed).
# Exit status: 0 done (a profile was written; a dry run passed), 1 the measurement wrote no
# profile, 2 a usage or environment problem (one line).
#
# Environment: PYTHON (python3), FLEETSIM_WHEELS (calibration/wheels), FLEETSIM_GPU (0),
# FLEETSIM_BUDGET_S (seconds for the measurement; default what is left of 6.5 minutes after the
# install, at most 360: with the report and the kill grace the whole run stays under 8 minutes),
# FLEETSIM_SKIP_INSTALL=1 (use PYTHON as it is: fleetsim and its
# dependencies already importable there).
set -uo pipefail

usage="usage: bash calibration/device_run.sh [--dry-run] OUT"
dry=0
out=""
while (($#)); do
    case "$1" in
    --dry-run) dry=1 ;;
    -h | --help)
        sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "device_run.sh: unknown option $1; $usage" >&2
        exit 2
        ;;
    *)
        if [[ -n $out ]]; then
            echo "device_run.sh: one output folder, not '$out' and '$1'; $usage" >&2
            exit 2
        fi
        out=$1
        ;;
    esac
    shift
done
[[ -n $out ]] || {
    echo "device_run.sh: no output folder; $usage" >&2
    exit 2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
wheels=${FLEETSIM_WHEELS:-$repo/calibration/wheels}
gpu=${FLEETSIM_GPU:-0}
skip_install=${FLEETSIM_SKIP_INSTALL:-0}
mkdir -p "$out" || {
    echo "device_run.sh: cannot create the output folder $out" >&2
    exit 2
}
out=$(cd "$out" && pwd)
log=$out/device_run.log
: >"$log"
exec > >(tee -a "$log") 2> >(tee -a "$log" >&2)

say() { echo "device_run.sh: $*"; }
die() {
    echo "device_run.sh: $*" >&2
    exit 2
}

# ---- 1. environment and wheels ----------------------------------------------------------------
say "$( ((dry)) && echo "dry run: " )output folder $out; working tree $repo"
command -v "$python" >/dev/null 2>&1 || die "no python: '$python' is not a command (set PYTHON)"
read -r py_version py_tag < <("$python" -c 'import sys; v = sys.version_info; print(f"{v[0]}.{v[1]}.{v[2]} cp{v[0]}{v[1]}")') ||
    die "'$python' does not run"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python $py_version is too old: fleetsim needs 3.10 or newer"
command -v timeout >/dev/null 2>&1 || die "no 'timeout' command (coreutils): the time budget needs it"
smi=$(command -v nvidia-smi || true)

[[ -d $wheels ]] || die "no wheel folder $wheels: run calibration/fetch_wheels.sh first (on a machine with the package index)"
required=(simpy pydantic pydantic_core annotated_types typing_inspection typing_extensions setuptools)
found=()
for name in "${required[@]}"; do
    match=$(find "$wheels" -maxdepth 1 -name "${name}-*.whl" -print -quit)
    [[ -n $match ]] || die "wheel folder $wheels has no ${name} wheel: run calibration/fetch_wheels.sh"
    found+=("$(basename "$match")")
done
core=$(find "$wheels" -maxdepth 1 -name "pydantic_core-*-${py_tag}-*.whl" -print -quit)
if [[ -z $core ]]; then
    note="the pydantic_core wheel in $wheels is not for $py_tag (python $py_version)"
    [[ $skip_install == 1 ]] || die "$note: fetch wheels for this python (PYTHON_VERSION=${py_version%.*} bash calibration/fetch_wheels.sh)"
    say "note: $note (unused: FLEETSIM_SKIP_INSTALL=1)"
fi

# ---- 2. install ---------------------------------------------------------------------------------
py=$python
install_line="skipped (FLEETSIM_SKIP_INSTALL=1: $python as it is)"
if [[ $skip_install != 1 ]]; then
    start=$SECONDS
    venv=$out/venv
    user_flag=()
    if "$python" -m venv --system-site-packages "$venv" >>"$log" 2>&1; then
        py=$venv/bin/python
        where="venv $venv (it sees the machine's torch, numpy, ...)"
    else
        say "note: python -m venv failed (see the log); installing for the user instead"
        user_flag=(--user)
        export PIP_BREAK_SYSTEM_PACKAGES=1
        where="the user site of $python"
    fi
    say "installing fleetsim into $where from $wheels (no network)"
    "$py" -m pip install --disable-pip-version-check --no-input --no-index --find-links "$wheels" \
        "${user_flag[@]}" -e "$repo" >>"$log" 2>&1 ||
        die "pip install --no-index --find-links $wheels -e $repo failed (last lines of $log: $(tail -n 3 "$log" | tr '\n' ' '))"
    install_line="done in $((SECONDS - start)) s: $where"
fi

# ---- 3. fleetsim imports, calibrate parses --------------------------------------------------------
profile=$out/profile.yaml
checks=$("$py" - "$profile" "$gpu" <<'PY'
import importlib
import sys

import fleetsim
import fleetsim.calibrate
import pydantic
import simpy
import typer.main

from fleetsim.cli.root import app

group = typer.main.get_command(app)
ctx = group.make_context("fleetsim", ["calibrate"], resilient_parsing=True)
calibrate = group.get_command(ctx, "calibrate")
params = calibrate.make_context("calibrate", ["--gpu", sys.argv[2], "--quick", "--out", sys.argv[1]], parent=ctx).params
assert params["quick"] and params["gpu_index"] == int(sys.argv[2]), params
print(f"fleetsim={fleetsim.__version__} simpy={simpy.__version__} pydantic={pydantic.VERSION}")
for name in ("torch", "pynvml"):
    try:
        module = importlib.import_module(name)
    except Exception as error:  # reported, not fatal here: the measurement itself says what is missing
        print(f"{name}=missing({type(error).__name__})")
        continue
    cuda = getattr(getattr(module, "version", None), "cuda", None) if name == "torch" else None
    print(f"{name}={getattr(module, '__version__', 'installed')}" + (f"(cuda {cuda})" if name == "torch" else ""))
PY
) || die "fleetsim does not import or \`fleetsim calibrate\` does not parse with $py (see $log)"
checks=$(echo $checks) # one line

budget=${FLEETSIM_BUDGET_S:-$((390 - SECONDS))}
((budget > 360)) && budget=360
((budget < 60)) && budget=60
run=(timeout -s TERM -k 30 "$budget" "$py" -m fleetsim calibrate --gpu "$gpu" --quick --out "$profile")
writes="profile.yaml profile.samples.csv nvidia-smi.txt nvml-before.json nvml-after.json report.txt report.png device_run.log"

summary() {
    echo "  python:      $python ($py_version)"
    echo "  wheels:      $wheels (${#found[@]}: ${found[*]})"
    echo "  install:     $install_line"
    echo "  imports:     $checks; \`fleetsim calibrate\` parses"
    echo "  nvidia-smi:  ${smi:-not found}"
}

if ((dry)); then
    say "dry run ok (nothing touched a GPU)"
    summary
    echo "  would run:   ${run[*]}"
    echo "  would write: $out/{${writes// /,}}"
    exit 0
fi

# ---- 4. measure -------------------------------------------------------------------------------------
[[ $checks == *"torch=missing"* ]] && die "torch is not importable with $py: the measurement needs torch with CUDA"
[[ $checks == *"pynvml=missing"* ]] && die "nvidia-ml-py (pynvml) is not importable with $py"
[[ $checks == *"(cuda None)"* ]] && die "torch with $py is built without CUDA ($checks)"
[[ -n $smi ]] || die "no nvidia-smi: is this the GPU machine?"
nvidia-smi -q 2>&1 | grep -viE 'serial|uuid' >"$out/nvidia-smi.txt" || say "note: nvidia-smi -q failed (see $out/nvidia-smi.txt)"
record() {
    "$py" - "$gpu" "$1" <<'PY' || say "note: no NVML record $1"
import json
import sys

from fleetsim.calibrate.energy import nvml_record, open_device

try:
    device = open_device(int(sys.argv[1]))
except Exception as error:  # one line: the measurement itself says more
    sys.exit(f"device_run.sh: {error}")
try:
    record = nvml_record(device)
finally:
    device.close()
with open(sys.argv[2], "w") as f:
    json.dump(record, f, indent=1)
PY
}
record "$out/nvml-before.json"
say "measuring for at most $budget s: ${run[*]}"
"${run[@]}"
rc=$?
((rc == 124)) && say "the time budget ($budget s) ran out: what was measured is fitted and written, marked partial"
record "$out/nvml-after.json"
if [[ ! -f $profile ]]; then
    say "no profile written (fleetsim calibrate exit $rc); samples so far: $(ls "$out"/*.samples.csv 2>/dev/null || echo none)"
    summary
    exit 1
fi
timeout 60 "$py" -m fleetsim calibrate --report "$profile" --plot "$out/report.png" >"$out/report.txt" 2>&1 ||
    say "note: the report failed (see $out/report.txt)"
say "done in $SECONDS s (fleetsim calibrate exit $rc)"
summary
"$py" - "$profile" <<'PY'
import sys

from fleetsim.calibrate import read_profile, read_profile_samples

profile = read_profile(sys.argv[1])
samples = read_profile_samples(sys.argv[1], profile)
ran = samples.drop_duplicates("case_id")
skipped = int((ran["skipped_reason"] != "").sum())
print(f"  profile:     {sys.argv[1]} ({profile.gpu}, {profile.provenance.kind}, {profile.provenance.gpu_name})")
print(f"  samples:     {len(ran)} cases ({skipped} skipped), {len(samples)} rows")
print(f"  fitted:      memory {profile.memory.eta_max}, compute " + ", ".join(f"{d} {c.eta_max}" for d, c in profile.compute.items())
      + f", prefill_eta {profile.attention.prefill_eta}, kv {profile.attention.kv_read_efficiency}")
print(f"  residuals:   {profile.fit_residuals}")
PY
exit 0
