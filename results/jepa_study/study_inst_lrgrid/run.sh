#!/bin/bash
# The study_inst sweep (results/jepa_study/study_inst) with the learning-rate grid extended down to 1e-5
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=/tmp/study_inst
exec nice -n 5 .venv/bin/pcgrasp sweep --config study seed=0 data.root=$S/data/grasps data.splits=$S/data/splits \
  data.pretrain_cache=$S/data/pretrain_cache_512 data.pretrain_root=$S/data/shapenet \
  pretrain.out=$S/pretrain pretrain.epochs=30 pretrain.target_norm=instance "pretrain.ema=[0.99,0.999]" \
  train.pretrained=$S/pretrain/encoder.pt train.out=$S/train sweep.out=/tmp/study_inst_lr/sweep \
  "sweep.lr_grid.lr_backbone=[1.0e-5,3.0e-5,1.0e-4,3.0e-4,1.0e-3]"
