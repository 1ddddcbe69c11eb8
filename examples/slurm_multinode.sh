#!/usr/bin/env bash
# Multi-node training under SLURM: one `accelerate launch` per node, the first node as rendezvous host.
#   sbatch examples/slurm_multinode.sh DATA OUTPUT [extra `implicit-prm train` flags]
#SBATCH --job-name=implicit-prm
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
set -euo pipefail
DATA=${1:?training data}; OUTPUT=${2:?output dir}; shift 2
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
GPUS=$((SLURM_NNODES * 8))
# Every node runs this line; SLURM_NODEID gives its rank. A killed job resumes from OUTPUT's last checkpoint.
srun bash -c "accelerate launch --config_file configs/accelerate/multi_node.yaml \
  --num_machines $SLURM_NNODES --num_processes $GPUS --machine_rank \$SLURM_NODEID \
  --main_process_ip $HEAD --main_process_port 29500 \
  -m implicit_prm train --data '$DATA' --output '$OUTPUT' $*"
