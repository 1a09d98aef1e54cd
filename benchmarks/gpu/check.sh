#!/usr/bin/env bash
# The one command for a GPU window (`make gpu-check`): installs the carried wheels and arraygpt with no
# network, prints the GPU, driver and library versions, then runs each part under its own time limit,
# continuing past a failed one: the GPU tests (pytest -m gpu), parity of every GPU backend x dtype on 124M,
# the gpu-check bench suite (recorded torch and CuPy beside their eager variants, jax-loop, HF peers on the
# GPU), a per-step profile (ms and kernels per step), and Inductor inside the recorded torch step. 7 minutes
# in all on an H100/H200. Everything goes under $OUT (8 files, the most the device tool brings back); the
# summary table, with each target of issue 26 and its measured distance, is printed last.
#
# On an H200 the whole check needs about 12 minutes (the first H200 run showed 7 were too few: every part
# hit its limit), more than one call of a 15-minute window can spend, so GPU_CHECK_PARTS picks the parts of
# a call (install and versions are cheap and belong in each), GPU_CHECK_BENCH_BACKENDS and
# GPU_CHECK_PROFILE_BACKENDS narrow the bench and the profile, GPU_CHECK_LIMITS sets the seven limits:
#
#   GPU_CHECK_PARTS="install versions bench profile inductor" OUT=$OUT make gpu-check   # call 1
#   GPU_CHECK_PARTS="install versions tests parity" OUT=$OUT make gpu-check             # call 2
#
#   OUT=/tmp/out bash benchmarks/gpu/check.sh            # on the GPU machine
#   GPU_CHECK_DEVICE=cpu OUT=/tmp/dry bash benchmarks/gpu/check.sh   # the dry run (tiny model, seconds;
#                                                                    # part of `make test`)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/gpu-check}"
DEVICE="${GPU_CHECK_DEVICE:-gpu}"
PARTS=" ${GPU_CHECK_PARTS:-install versions tests parity bench profile inductor} "
export PY="${PYTHON:-python3}"
export ARRAYGPT_CACHE="${ARRAYGPT_CACHE:-/tmp/arraygpt-gpu-check-cache}"
mkdir -p "$OUT"
: > "$OUT/parts.txt"
LOG="$OUT/check.log"
: > "$LOG"

# part NAME LIMIT_SECONDS COMMAND...: run it with a time limit, its output in check.log, its end in parts.txt.
part() {
  local name=$1 limit=$2
  shift 2
  if [[ "$PARTS" != *" $name "* ]]; then echo "== $name: not in GPU_CHECK_PARTS" | tee -a "$LOG"; return; fi
  local start=$SECONDS
  echo "== $name (limit ${limit} s): $*" | tee -a "$LOG"
  if declare -F "$1" > /dev/null; then  # a function of this script: timeout runs programs, so via bash
    timeout --kill-after=10 "$limit" bash -c "$(declare -f "$1"); $*" >> "$LOG" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  fi
  local code=$?
  echo "$name $code $((SECONDS - start))" >> "$OUT/parts.txt"
  echo "   -> exit $code after $((SECONDS - start)) s" | tee -a "$LOG"
}

if [ "$DEVICE" = cpu ]; then  # the dry run: the same parts on the CPU, tiny model, no install
  MODEL=tiny
  BACKENDS=numpy,jax:cpu,torch:cpu
  DTYPES=float32
  BENCH=(--suite gpu-check --models tiny --backends numpy,jax:cpu,torch-eager:cpu --peer none --repeats 1 --warmup 0
         --new-tokens 8 --prompt-lens 8 --prefill-batch-sizes 1)
  PROFILE=(--model tiny --backends numpy,torch:cpu,torch-eager:cpu --steps 4)
  INDUCTOR=(--model tiny --backends torch-inductor:cpu --steps 4)  # records nothing on a CPU: an error row
  LIMITS=(30 30 120 90 120 60 60)
else
  MODEL=124M
  BACKENDS=jax:gpu,jax-loop:gpu,torch:gpu,cupy
  DTYPES=float32,float16,bfloat16
  BENCH=(--suite gpu-check --backends "${GPU_CHECK_BENCH_BACKENDS:-jax:gpu,jax-loop:gpu,torch:gpu,torch-eager:gpu,cupy,cupy-eager}")
  PROFILE=(--model 124M --backends "${GPU_CHECK_PROFILE_BACKENDS:-jax-loop:gpu,torch:gpu,torch-eager:gpu,cupy,cupy-eager}" --steps 32)
  # Inductor compiling the recorded step (default mode; its CUDA graphs are ours): a part of its own, last, so
  # a long compile cannot cost the bench its rows (torch:gpu itself is in the profile part).
  INDUCTOR=(--model 124M --backends torch-inductor:gpu --steps 32)
  LIMITS=(40 30 240 90 300 75 100)
fi
[ -n "${GPU_CHECK_LIMITS:-}" ] && read -r -a LIMITS <<< "$GPU_CHECK_LIMITS"  # seconds per part, in order

install() {
  if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps .whl/*.whl || return 1
  fi
  # the installed namespace and the entry point, not `import arraygpt`: from the repository root that works
  # uninstalled, and the engine finds the backends only through the entry point (the first H200 run skipped
  # the install so)
  "$PY" -c "import arraygpt.engine; from importlib.metadata import entry_points as e; assert e(group='arraygpt.backends')" \
    2> /dev/null \
    || "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e .
}

versions() {
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "
import platform; print('python', platform.python_version())
from arraygpt.benchmarks.measure.environment import library_versions
for name, version in library_versions().items(): print(name, version)
from arraygpt.backends import backend_status
for name, ok, where in backend_status(): print('backend', name, 'usable on' if ok else 'NOT usable:', where)
"
}

if [ "$DEVICE" = cpu ]; then
  echo "install 0 0" >> "$OUT/parts.txt"  # nothing to install: this checkout's environment runs it
else
  part install "${LIMITS[0]}" install
fi
part versions "${LIMITS[1]}" versions
[[ "$PARTS" == *" versions "* ]] && versions > "$OUT/versions.txt" 2>&1
part tests "${LIMITS[2]}" "$PY" -m pytest -q -m gpu -p no:cacheprovider
part parity "${LIMITS[3]}" "$PY" -m arraygpt parity --model "$MODEL" --backends "$BACKENDS" --dtypes "$DTYPES" \
  --json "$OUT/parity.json"
part bench "${LIMITS[4]}" "$PY" -m arraygpt bench "${BENCH[@]}" --json "$OUT/bench.json" --force
part profile "${LIMITS[5]}" "$PY" -m arraygpt.benchmarks.gpu.step_profile "${PROFILE[@]}" --json "$OUT/profile.json"
part inductor "${LIMITS[6]}" "$PY" -m arraygpt.benchmarks.gpu.step_profile "${INDUCTOR[@]}" --json "$OUT/inductor.json"
"$PY" -m arraygpt.benchmarks.gpu.summary "$OUT"
