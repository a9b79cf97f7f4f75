#!/bin/sh
# pip install inside the image builds, with deploy/build-extra/ (copied to /tmp/build-extra)
# when it holds anything: ca.crt becomes PIP_CERT, wheels/ a --find-links folder.
#   pip-install ARGS...          pip install ARGS...
#   pip-install --torch VERSION  torch==VERSION for TORCH_INDEX (cu130, cu126, cpu): a local
#                                wheel whose label matches (torch-VERSION+TORCH_INDEX-*.whl),
#                                else PyTorch's index for TORCH_INDEX.
set -eu
extra=${PCD_BUILD_EXTRA:-/tmp/build-extra}
if [ -f "$extra/ca.crt" ]; then
    export PIP_CERT="$extra/ca.crt"
fi
if [ "${1:-}" = "--torch" ]; then
    version=$2
    index=${TORCH_INDEX:?set TORCH_INDEX (cu130, cu126 or cpu)}
    for wheel in "$extra"/wheels/torch-"$version"+"$index"-*.whl; do
        if [ -f "$wheel" ]; then
            echo "pip-install: torch $version+$index from the local wheel $(basename "$wheel")"
            # its dependencies come with the next install (pip resolves them for the installed
            # torch); `pip check` at the end of each build stage proves they are all there
            exec pip install --no-deps "$wheel"
        fi
    done
    exec pip install "torch==$version" --index-url "https://download.pytorch.org/whl/$index"
fi
for wheel in "$extra"/wheels/*.whl; do
    if [ -f "$wheel" ]; then
        exec pip install --find-links "$extra/wheels" "$@"
    fi
done
exec pip install "$@"
