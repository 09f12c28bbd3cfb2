#!/usr/bin/env bash
# Create .venv (once) and install InstSeg's requirements into it, with the Paddle build you choose.
# Safe to run again. `bash tools/setup_env.sh --help` lists the options.
set -euo pipefail
cd "$(dirname "$0")/.."

PADDLE_VERSION="$(sed -n 's/^paddlepaddle==\([0-9.]*\)$/\1/p' requirements.txt)"
PADDLE_INDEX="https://www.paddlepaddle.org.cn/packages/stable"
CUDA_CHOICES="11.8 12.6 12.9"

usage() {
    cat <<EOF
Usage: bash tools/setup_env.sh [--cuda VERSION | --paddle "PIP SPEC" [--index-url URL]] [--onnx] [--dry-run]

Creates .venv (once) and installs requirements.txt into it. Paddle is the CPU build by default
(paddlepaddle==${PADDLE_VERSION} from PyPI).

  --cuda VERSION     GPU machines: install paddlepaddle-gpu==${PADDLE_VERSION} built for CUDA VERSION, one
                     of: ${CUDA_CHOICES}. Paddle publishes its 3.x GPU wheels on its own package index,
                     ${PADDLE_INDEX}/cu<VERSION without dot>/ (PyPI's paddlepaddle-gpu stops
                     at 2.6). Choose the newest VERSION not above the "CUDA Version" nvidia-smi prints.
  --paddle SPEC      install this pip requirement as Paddle instead (e.g. "paddlepaddle-gpu==${PADDLE_VERSION}");
  --index-url URL    with --paddle: the package index it comes from (PyPI stays available for the rest).
  --onnx             also install the optional ONNX export tools (requirements-onnx.txt: paddle2onnx,
                     onnxruntime), for Export.format=onnx; CI installs them for its tests.
  --dry-run          print the commands instead of running them.
  -h, --help         this text.

The other Paddle package (paddlepaddle vs paddlepaddle-gpu) is uninstalled first: both provide "paddle".
Check the result with: .venv/bin/python -c "import paddle; paddle.utils.run_check()"
EOF
}

die() { echo "setup_env.sh: $*" >&2; echo "Run bash tools/setup_env.sh --help for the options." >&2; exit 2; }

spec="paddlepaddle==${PADDLE_VERSION}"
index_url=""
dry_run=0
with_onnx=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --cuda)
            [ $# -ge 2 ] || die "--cuda needs a version (${CUDA_CHOICES})"
            case " ${CUDA_CHOICES} " in
                *" $2 "*) ;;
                *) die "--cuda $2: Paddle ${PADDLE_VERSION} GPU wheels exist for CUDA ${CUDA_CHOICES}" ;;
            esac
            spec="paddlepaddle-gpu==${PADDLE_VERSION}"
            index_url="${PADDLE_INDEX}/cu${2//./}/"
            shift 2 ;;
        --paddle) [ $# -ge 2 ] || die "--paddle needs a pip requirement"; spec="$2"; shift 2 ;;
        --index-url) [ $# -ge 2 ] || die "--index-url needs a URL"; index_url="$2"; shift 2 ;;
        --onnx) with_onnx=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        *) die "unknown option $1" ;;
    esac
done

run() {
    if [ "$dry_run" = 1 ]; then echo "$*"; else "$@"; fi
}

if [ ! -x .venv/bin/python ]; then
    run python3 -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
case "$spec" in paddlepaddle-gpu*) other="paddlepaddle" ;; *) other="paddlepaddle-gpu" ;; esac
paddle_args=("$spec")
if [ -n "$index_url" ]; then
    paddle_args+=(--index-url "$index_url" --extra-index-url https://pypi.org/simple)
fi
replaced=0
if [ -x "${pip[0]}" ] && "${pip[@]}" show --quiet "$other" >/dev/null 2>&1; then
    run "${pip[@]}" uninstall --yes --quiet "$other"
    replaced=1
fi
others="$(mktemp)"  # requirements.txt without its CPU Paddle line
trap 'rm -f "$others"' EXIT
grep -v '^paddlepaddle==' requirements.txt > "$others"
run "${pip[@]}" install --quiet -r "$others"
run "${pip[@]}" install --quiet "${paddle_args[@]}"
if [ "$replaced" = 1 ]; then
    # both packages install the same "paddle" folder: put back the files the uninstall took from it
    run "${pip[@]}" install --quiet --force-reinstall --no-deps "${paddle_args[@]}"
fi
if [ "$with_onnx" = 1 ]; then
    run "${pip[@]}" install --quiet -r requirements-onnx.txt
fi
