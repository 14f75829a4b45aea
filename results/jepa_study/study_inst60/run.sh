#!/bin/bash
# The study config with the 60-epoch instance-target encoder (study_small's inst_ema99_e60 seed 0: the same
# model, pretraining settings and 6,000 procedural shapes as the study's own pretraining), extended lr grid.
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=/tmp/study_inst
P=/tmp/jepa_exp/inst_ema99_e60_s0
INITS=${INITS:-[jepa,scratch]}
exec nice -n 5 .venv/bin/pcgrasp sweep --config study --quiet seed=0 data.root=$S/data/grasps data.splits=$S/data/splits \
  data.pretrain_cache=$S/data/pretrain_cache_512 data.pretrain_root=$S/data/shapenet \
  pretrain.out=$P pretrain.epochs=60 pretrain.target_norm=instance "pretrain.ema=[0.99,0.999]" \
  train.pretrained=$P/encoder.pt train.out=/tmp/study_inst60/train sweep.out=/tmp/study_inst60/sweep \
  "sweep.inits=$INITS" "sweep.lr_grid.lr_backbone=[1.0e-5,3.0e-5,1.0e-4,3.0e-4,1.0e-3]"
