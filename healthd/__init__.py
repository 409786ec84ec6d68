"""The llama-metrics health daemon: checks Ollama, the proxy and the machine; alerts by webhook.

``python -m healthd`` serves the results on 127.0.0.1:8080; ``python -m healthd check`` runs
every check once, prints a report and exits 0 (healthy), 1 (degraded) or 2 (unhealthy).
"""
