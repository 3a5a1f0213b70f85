#!/usr/bin/env bash
# The GPU checks of issue 8 in one prepared run (about 6 minutes on an H200).
#
# For the lent GPU machine, which has torch, scikit-learn and joblib but not
# skorch, POT or pytest: download their wheels here first, into .whl/
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       skorch==1.4.0 POT==0.9.7.post1 pytest pluggy iniconfig tabulate
#
# then run this script there (carry .whl). Without CUDA it stops at once.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; \
print(torch.__version__, torch.cuda.get_device_name())" || exit 1

# Real capture and replay against the eager search (fp32 and bf16).
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/test_step_graphs.py -k real

# Our step (eager, then replayed as a graph) against the baseline.
for options in "" "--cuda-graphs on" "--amp bf16 --cuda-graphs on"; do
    echo "== search_step.py --device cuda --config cifar $options"
    timeout 150 python3 benchmarks/search_step.py --device cuda --config cifar $options
done
