"""benchmarks/gpu_check.py without CUDA: one line saying so, exit 0 (its checks need a GPU)."""

import importlib.util

import torch

from tests.conftest import ROOT


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    assert gpu_check.main(["--work", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("gpu_check: no CUDA GPU here")
    assert not (tmp_path / "work").exists()  # nothing was prepared or trained
