"""Tools above the runner: the throughput and fine-tuning benchmarks, and the plain baseline they compare with."""
