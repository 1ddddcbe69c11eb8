"""The reward server: app.py (`implicit-prm serve`: FastAPI endpoints, limits, API key) and batcher.py (dynamic
batching). The HTTP client scorer is scoring/remote.py."""
