# Run from the repository root after the sweep: PYTHONPATH=. python results/detection/untrained_reference.py
"""AP of untrained detectors (random init, seeds 0-2): the chance reference of the sweep."""
import json, os, torch, numpy as np
from pcgrasp.train.config import load_config
from pcgrasp.train import detector as D
cfg = load_config("pcgrasp/configs/detector_demo.yaml", ["data.root=demo_out/detection/sweep_scenes", "data.train_scenes=0-3", "eval.anns=null"])
D.set_threads(cfg)
out = {}
for seed in (0, 1, 2):
    run = f"results/detection/runs/untrained_s{seed}"
    os.makedirs(run, exist_ok=True)
    torch.manual_seed(seed)
    m = D.build_model(cfg["model"])
    torch.save({"model": m.state_dict(), "model_cfg": cfg["model"]}, os.path.join(run, "model.pt"))
    out[seed] = D.evaluate_detector(cfg, run)["splits"]
    print(seed, out[seed], flush=True)
json.dump(out, open("results/detection/untrained.json", "w"), indent=1)
for s in D.SPLIT_RANGES:
    v = [out[k][s]["AP"] for k in out]
    print(s, f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}")
