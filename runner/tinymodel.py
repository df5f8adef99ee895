"""Build a tiny Llama model locally, with no downloads.

The model is random (bf16 weights), so its text is meaningless; it exists so that a real
engine can load real weights through its normal path on a CPU in seconds. Building is
deterministic for a given seed: same tokenizer, same config, same weights.

Run: ``python -m runner.tinymodel models/tiny-llama``
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

#: Geometry of the tiny model. Small enough for ~3 s engine start on one CPU core.
VOCAB_SIZE = 4096
CONFIG = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
_WORDS = [
    "the", "a", "model", "token", "serve", "batch", "cache", "request", "latency", "throughput",
    "engine", "gpu", "node", "sweep", "trial", "prompt", "output", "input", "rate", "load", "queue",
    "decode", "prefill", "memory", "tensor", "pipeline", "expert", "parallel", "replica", "cluster",
    "placement", "group", "actor", "stream", "chunk", "time",
]


def _corpus(seed: int, lines: int = 4000) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) + (str(rng.randint(0, 999)) if rng.random() < 0.3 else "")
                 for _ in range(rng.randint(5, 30))]
        out.append(" ".join(words))
    return out


def build(out_dir: str | Path, seed: int = 0, geometry: dict[str, int] | None = None) -> Path:
    """Write tokenizer, config and weights to ``out_dir``; return it. Idempotent: rebuilt only
    when the seed or the geometry (``CONFIG`` updated by ``geometry``) differs from the marker's."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shape = {**CONFIG, **(geometry or {})}
    out = Path(out_dir)
    marker = out / "tiny-model.json"
    if marker.exists() and {k: v for k, v in json.loads(marker.read_text()).items() if k != "vocab_size"} \
            == {"seed": seed, **shape}:
        return out
    out.mkdir(parents=True, exist_ok=True)

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(seed), vocab_size=VOCAB_SIZE, min_frequency=1,
                            special_tokens=["<s>", "</s>", "<unk>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tok.model_max_length = shape["max_position_embeddings"]
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, torch_dtype="bfloat16",
                         tie_word_embeddings=True, **shape)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    marker.write_text(json.dumps({"seed": seed, "vocab_size": len(tok), **shape}))
    return out


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "models/tiny-llama"
    print(build(target))
