"""Tests of edgegen.report helpers: the unlearning acceptance verdict."""

from edgegen.report import unlearn_misses


def test_unlearn_misses_lists_each_missed_target():
    retrain = {"backdoor_asr": 0.01, "forget_acc": 0.60, "mia_auc": 0.30, "remaining_acc": 0.98, "test_acc": 0.97}
    ok = {"backdoor_asr": 0.059, "forget_acc": 0.629, "mia_auc": 0.251, "remaining_acc": 0.961, "test_acc": 0.989,
          "bytes_ratio_vs_retrain": 0.2, "wall_ratio_vs_retrain": 0.19}
    assert unlearn_misses(ok, retrain) == []
    bad = {**ok, "forget_acc": 0.56, "test_acc": 0.94, "wall_ratio_vs_retrain": 0.21}
    assert unlearn_misses(bad, retrain) == ["forget_acc", "test_acc", "wall time saving"]
    assert unlearn_misses({**ok, "mia_auc": 0.36}, retrain) == ["mia_auc"]  # +0.06 > 0.05
