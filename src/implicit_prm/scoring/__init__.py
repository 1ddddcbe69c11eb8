"""Scoring: the `Scorer` protocol every scorer implements (protocol.py), the one no-grad forward loop (forward.py), the
on-disk log-prob cache (cache.py), the reference pass (reference.py), the implicit PRM (implicit.py), released-PRM
readout scorers (readout.py, layouts.py, detect.py), a remote scorer over HTTP (remote.py), `load_scorer`
(load.py), the scored-record schema and reader (schema.py, records.py) and the `implicit-prm score` verb (score.py)."""
