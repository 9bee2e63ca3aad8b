"""OpenAI Chat Completions and every host that speaks it (presets), Azure OpenAI and Mistral included."""
