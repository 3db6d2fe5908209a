#!/usr/bin/env bash
# N ranks of --data-parallel against one process with --micro-batches N: the same weights digest,
# for the MLP, the CNN (batch norm) and the transformer. Usage: bash benchmarks/ddp_bits.sh [N] [mpirun]
N=${1:-2}
MPIRUN=${2:-$( [ -x /usr/bin/mpirun ] && echo /usr/bin/mpirun || echo mpirun )}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The full path: mpirun may put its own prefix first on PATH, where another python3 lies.
PY=${PYTHON:-$(command -v python3)}
status=0
for args in "digits --epochs 2 --batch-size 256" "digits --model cnn --epochs 1 --batch-size 256" \
            "sort --epochs 1 --steps 10 --batch-size 256"; do
    one=$($PY -m hlx_vulkan.cli train $args --quiet --micro-batches "$N" | grep "weights digest")
    many=$("$MPIRUN" -n "$N" --oversubscribe --bind-to none $PY -m hlx_vulkan.cli train $args --quiet --data-parallel \
           | grep "weights digest")
    same=$([ -n "$one" ] && [ "$one" = "$many" ] && echo same || echo DIFFERENT)
    [ "$same" = same ] || status=1
    echo "train $args: --micro-batches $N ${one#weights digest: } | $N ranks ${many#weights digest: } | $same"
done
exit $status
