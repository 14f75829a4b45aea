"""Where the kNN deficit arises: the frozen probe of one finished pretraining read at every stage
of the context encoder — the tokenizer's patch tokens, the tokens plus positional embedding (the
transformer's input), each block's residual stream, the encoder's output (after its final
LayerNorm, what the probe reads) — and at the same stages of the random encoder of the same
seed; plus two hybrids that swap one part: the pretrained tokenizer under the random
transformer, and the random tokenizer under the pretrained transformer. Every stage is pooled
as the probe pools (mean + max over tokens), on the probe's 600 held-out shapes.

    python results/jepa_targets/probe_layers.py RUN_DIR SEED [key=value ...]   # >> probe_layers.txt
"""
import copy
import sys

import numpy as np
import torch

from probe_variants import load_run, write


@torch.no_grad()
def stages(enc, clouds, batch_size=100):
    """{stage: [n, 2 dim] mean + max pooled features} of encoder ``enc``."""
    enc.eval()
    out = {}
    for i in range(0, len(clouds), batch_size):
        centres, tok = enc.tokenize(clouds[i:i + batch_size])
        h = tok + enc.pos(centres)
        final, blocks = enc.encoder(h, return_blocks=True)
        for name, x in [("tokens", tok), ("tokens+pos", h)] + [(f"block{j + 1}", b) for j, b in enumerate(blocks)] \
                + [("output", final)]:
            out.setdefault(name, []).append(torch.cat([x.mean(1), x.amax(1)], -1))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def main(run, seed, *overrides):
    seed = int(seed)
    _, ds, clouds, prop, model, rand = load_run(run, seed, overrides)
    jepa = model.context
    hyb_tok = copy.deepcopy(rand)  # pretrained tokenizer, random positional MLP + transformer
    hyb_tok.tokenizer.load_state_dict(jepa.tokenizer.state_dict())
    hyb_tr = copy.deepcopy(jepa)  # random tokenizer, pretrained positional MLP + transformer
    hyb_tr.tokenizer.load_state_dict(rand.tokenizer.state_dict())
    rows = []
    for name, enc in (("jepa", jepa), ("random", rand)):
        rows += [((name, st), x) for st, x in stages(enc, clouds).items()]
    rows += [(("jepa_tok+random_tr", "output"), stages(hyb_tok, clouds)["output"]),
             (("random_tok+jepa_tr", "output"), stages(hyb_tr, clouds)["output"])]
    assert np.isfinite(np.concatenate([x for _, x in rows], 1)).all()
    write("probe_layers.txt", run, rows, ds, prop, seed)


if __name__ == "__main__":
    main(*sys.argv[1:])
