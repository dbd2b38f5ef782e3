#!/usr/bin/env bash
# Build the llama.cpp tools tokenswap's GGUF export is checked with (tests/slow, benchmarks/payoff.py)
# from the llama.cpp sources that PyPI's llama-cpp-python sdist vendors. Only five targets:
# llama-tokenize, llama-perplexity, llama-completion (greedy generation), llama-bench and
# llama-batched-bench (generation with several sequences in one batch).
# Cached in ${TOKENSWAP_LLAMACPP:-~/.cache/tokenswap/llama.cpp}: a rerun with the binaries
# present does nothing. Prints the bin directory on success.
set -euo pipefail
VERSION=0.3.36
ROOT=${TOKENSWAP_LLAMACPP:-$HOME/.cache/tokenswap/llama.cpp}
BIN=$ROOT/build/bin
TARGETS="llama-tokenize llama-perplexity llama-completion llama-bench llama-batched-bench"
PY=${PYTHON:-python3}
# One patch, to llama.cpp's logger: the tools print their results through an asynchronous
# logger whose queue is lost when the program exits (llama.cpp issue 22142: the last lines of
# llama-completion's text or llama-perplexity's chunks, now and then, with exit code 0; often
# for a small model that exits within milliseconds). An atexit handler flushes it.
PATCH=flush-log-at-exit
done_already=1
for t in $TARGETS; do [ -x "$BIN/$t" ] || done_already=0; done
[ -f "$ROOT/build/.patched-$PATCH" ] || done_already=0
if [ "$done_already" = 1 ]; then echo "$BIN"; exit 0; fi
mkdir -p "$ROOT"
SRC=$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  # the sdist only (pip prepares its metadata, ~3 min once; nothing of it is installed)
  "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$ROOT" >&2
  tar xzf "$ROOT/llama_cpp_python-$VERSION.tar.gz" -C "$ROOT"
fi
LOGCPP=$SRC/common/log.cpp
if ! grep -q "tokenswap: $PATCH" "$LOGCPP"; then
  sed -i "0,/log->set_colors(tty_can_use_colors());/s//&\n        std::atexit([] { common_log_pause(common_log_main()); });  \/\/ tokenswap: $PATCH/" "$LOGCPP"
  grep -q "tokenswap: $PATCH" "$LOGCPP" || { echo "could not patch $LOGCPP" >&2; exit 1; }
fi
JOBS=${JOBS:-$(nproc)}
cmake -S "$SRC" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON >&2
# shellcheck disable=SC2086
nice cmake --build "$ROOT/build" -j "$JOBS" --target $TARGETS >&2
touch "$ROOT/build/.patched-$PATCH"
echo "$BIN"
