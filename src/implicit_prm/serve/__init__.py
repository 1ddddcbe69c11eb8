"""The reward server: app.py (`implicit-prm serve`: FastAPI endpoints, limits, API key), batcher.py (dynamic
batching), client.py (the HTTP scorer `search --prm http://...` uses)."""
