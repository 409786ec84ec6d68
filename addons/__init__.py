"""The llama-metrics proxy: mitmproxy addons that measure Ollama traffic."""
