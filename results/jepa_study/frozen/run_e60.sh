#!/bin/bash
# Frozen backbones (lr_backbone 0): the grasp head trained on the study_inst JEPA encoder vs on a random one
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=/tmp/study_inst
# the same head on the frozen 60-epoch encoder (study_small inst_ema99_e60 seed 0)
P=/tmp/jepa_exp/inst_ema99_e60_s0
for b in 1.0 0.1; do for s in 0 1; do
  [ -f /tmp/study_inst_lr/frozen60/jepa_wta_b$(printf %03d $(python3 -c "print(round($b*100))"))_A_s$s/test_metrics.json ] && continue
  nice -n 5 .venv/bin/pcgrasp train --config study --quiet --init jepa --budget $b --pack A --seed $s seed=0 \
    data.root=$S/data/grasps data.splits=$S/data/splits data.pretrain_cache=$S/data/pretrain_cache_512 \
    data.pretrain_root=$S/data/shapenet pretrain.out=$P train.pretrained=$P/encoder.pt \
    train.lr_backbone=0.0 train.lr_head=1.0e-3 train.out=/tmp/study_inst_lr/frozen60
done; done
