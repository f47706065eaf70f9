"""Heterogeneous-rank federated LoRA over a wireless edge: LoRA aggregation maths and round-latency allocation."""
