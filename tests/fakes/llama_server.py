"""The real-model tests' Ollama-API server: ollabot's embedded llama.cpp server itself."""

from adapters.llama_embedded import (
    MODEL_NAME,
    ContextOverflow,
    Exchange,
    LlamaOllamaServer,
    Sampling,
    SmolLM2,
    StopFilter,
    smollm2_gguf,
)

__all__ = [
    "MODEL_NAME",
    "ContextOverflow",
    "Exchange",
    "LlamaOllamaServer",
    "Sampling",
    "SmolLM2",
    "StopFilter",
    "smollm2_gguf",
]
