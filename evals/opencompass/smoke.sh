#!/usr/bin/env bash
# OpenCompass end to end against agentkit: build OpenCompass's own venv (once), serve the embedded model with
# `agentkit serve`, run the shipped tiny multiple-choice set through OpenCompass, check the summary, stop the server.
# OpenCompass 0.5.4 pins numpy<2 and datasets<4, so it lives apart from agentkit's venv and talks HTTP.
#
# Variables: AGENTKIT_PYTHON (agentkit's python, default .venv/bin/python), OPENCOMPASS_VENV (default
# ~/.cache/agentkit/opencompass-venv), PYTHON (to create it, default python3), PORT (default 18765),
# OC_WORK_DIR (default runs/opencompass-smoke).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AGENTKIT_PYTHON=${AGENTKIT_PYTHON:-$ROOT/.venv/bin/python}
OPENCOMPASS_VENV=${OPENCOMPASS_VENV:-$HOME/.cache/agentkit/opencompass-venv}
PORT=${PORT:-18765}
WORK=${OC_WORK_DIR:-$ROOT/runs/opencompass-smoke}
HERE=$ROOT/evals/opencompass
started=$(date +%s)
say() { echo "opencompass-smoke [$(( $(date +%s) - started ))s]: $*" >&2; }

# 1. OpenCompass's venv. torch first, pinned: a bare `torch` requirement pulls the multi-GB CUDA build.
#    pyarrow<21 and pandas<3: their newest releases need numpy>=2, which OpenCompass forbids.
if ! "$OPENCOMPASS_VENV/bin/python" -c "import opencompass" 2>/dev/null; then
  say "building $OPENCOMPASS_VENV (a few minutes, once)"
  "${PYTHON:-python3}" -m venv "$OPENCOMPASS_VENV"
  "$OPENCOMPASS_VENV/bin/pip" install -q "torch==2.13.*"
  "$OPENCOMPASS_VENV/bin/pip" install -q "opencompass==0.5.4" "pyarrow<21" "pandas<3"
fi
"$OPENCOMPASS_VENV/bin/python" -c "import opencompass, numpy; print('opencompass', opencompass.__version__, 'numpy', numpy.__version__)"

# 2. The server, on the embedded model. Its tokenizer directory doubles as OpenCompass's token counter
#    (otherwise OpenCompass fetches tiktoken files from the network).
mkdir -p "$WORK"
TOKENIZER=$("$AGENTKIT_PYTHON" -c "from agentkit.models.embedded import ensure_embedded_cache; print(ensure_embedded_cache())")
say "starting agentkit serve on 127.0.0.1:$PORT (log: $WORK/server.log)"
"$AGENTKIT_PYTHON" -m agentkit serve --model embedded --host 127.0.0.1 --port "$PORT" --name agentkit \
  --max-new-tokens 32 >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
"$AGENTKIT_PYTHON" - "$PORT" "$SERVER" <<'PY'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(240):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("agentkit serve exited before it was ready: see server.log")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            if reply.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("agentkit serve did not answer /health within 120 s")
PY
say "server ready"

# 3. OpenCompass, inference and evaluation, from its own venv; run inside $WORK because it writes scratch
#    folders (tmp/, icl_inference_output/, .cache/) into the current directory.
mkdir -p "$WORK"
cd "$WORK"
AGENTKIT_BASE_URL="http://127.0.0.1:$PORT/v1" AGENTKIT_MODEL_NAME=agentkit AGENTKIT_API_KEY=EMPTY \
AGENTKIT_TOKENIZER="$TOKENIZER" AGENTKIT_OC_DATA="$HERE/data/tiny_choice.jsonl" \
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  "$OPENCOMPASS_VENV/bin/opencompass" "$HERE/configs/eval_agentkit_smoke.py" -w "$WORK"

# 4. The summary must hold a score for the tiny set.
summary=$(ls -t "$WORK"/*/summary/summary_*.csv 2>/dev/null | head -n 1)
if [ -z "$summary" ] || ! grep -q "agentkit-tiny-choice" "$summary" || grep "agentkit-tiny-choice" "$summary" | grep -q ",-$"; then
  say "FAILED: no score for agentkit-tiny-choice in ${summary:-$WORK/*/summary}"
  exit 1
fi
cat "$summary"
say "passed ($summary)"
