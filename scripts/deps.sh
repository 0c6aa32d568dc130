#!/usr/bin/env bash
# Installs the Debian packages medembed builds and tests with, if any are
# missing. `make` targets call it; it is quiet when everything is present.
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh --test   also Debian's PyTorch (with OpenBLAS: the reference BLAS it
#                            falls back to is about 10x slower), for the Python tool environment
#                            (scripts/venv.sh: sentence-transformers runs on it), and chromium
#                            (tests/py/test_openapi.py renders the server's /docs page headless)
#                            and Java 17 (openjdk-17-jre-headless: the JVM of pyspark, which
#                            tests/py/test_spark.py runs as local[2] and a standalone cluster)
#                            and hnswlib (python3-hnswlib: tests/py/test_hnsw_recall.py compares
#                            the graph's recall with it, run by /usr/bin/python3)
#   scripts/deps.sh --ci     both, and the fuzzing toolchain (clang's libFuzzer)
#   scripts/deps.sh --arm64  the ARM64 cross build and its emulated tests (`make test-arm64`):
#                            Debian's cross compiler, qemu-user and the :arm64 libraries
#                            (multiarch: they install beside the amd64 ones)
set -euo pipefail
pkgs=(build-essential pkg-config libutf8proc-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libmicrohttpd-dev libcmocka-dev
      python3 python3-numpy python3-pytest python3-pandas python3-dask python3-distributed
      python3-setuptools python3-wheel python3-pip python3-venv ca-certificates)
case "${1:-}" in
    --test) pkgs+=(python3-torch libopenblas0-pthread chromium openjdk-17-jre-headless
                   python3-hnswlib) ;;
    --ci) pkgs+=(python3-torch libopenblas0-pthread chromium openjdk-17-jre-headless
                 python3-hnswlib clang libclang-rt-14-dev) ;;
    --arm64) pkgs+=(gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libutf8proc-dev:arm64
                    libjansson-dev:arm64 libsqlite3-dev:arm64 libcurl4-openssl-dev:arm64
                    libmicrohttpd-dev:arm64 libcmocka-dev:arm64) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "medembed: installing missing Debian packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo=sudo; else
        echo "medembed: run as root: apt-get install -y ${missing[*]}" >&2; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if [ "${1:-}" = --arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
