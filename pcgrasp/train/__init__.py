"""Training: the one engine (``engine.fit``: optimiser, schedule, autocast, checkpoints, resume, DDP)
and one module per pipeline's jobs (``jepa``, ``contrast``, ``detector``, ``ebm``, ``sweep``), plus
``config`` (YAML configs with ``key.sub=value`` overrides). Import the modules themselves, e.g.
``from pcgrasp.train.engine import fit``; this package imports nothing on its own so that the CLI
stays fast to start."""
