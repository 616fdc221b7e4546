"""Prediction through CUDA graphs: used on CUDA only, equal to the eager network."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from jumpdenoise.predict.engine import Predictor  # noqa: E402
from jumpdenoise.predict.network_variants import fuse_for_inference  # noqa: E402

from test_gpu_fast import careamics_unet, loaded  # noqa: E402  (tests/unit is on sys.path)


def test_cpu_predictors_never_use_graphs_and_say_so() -> None:
    net = careamics_unet(2, features=8)
    for setting in (None, True, False):
        p = Predictor(loaded(net, 2), cuda_graphs=setting)
        assert p.cuda_graphs is False and p.settings()["cuda_graphs"] is False
    field = np.random.default_rng(0).normal(100, 10, (2, 40, 52)).astype(np.float32)
    a = Predictor(loaded(net, 2), cuda_graphs=True).denoise(field)
    b = Predictor(loaded(net, 2), cuda_graphs=False).denoise(field)
    assert np.array_equal(a, b)


def test_benchmark_modes_parse_graph_tokens() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_predict", Path(__file__).parents[2] / "benchmarks/predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.parse_mode("bf16+split+graphs")["cuda_graphs"] is True
    assert bench.parse_mode("bf16+nographs")["cuda_graphs"] is False
    assert bench.parse_mode("fp32")["cuda_graphs"] is None
    assert bench.parse_pipeline("bf16+pf6+wp12+wpu64") == {"prefetch": 6, "write_processes": 12, "wells_per_unit": 64}
    with pytest.raises(ValueError, match="exclude"):
        bench.parse_mode("bf16+graphs+nographs")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("variant", ["grouped", "split"])
def test_graphed_prediction_equals_eager(bf16: bool, variant: str) -> None:
    from jumpdenoise.predict.graphs import GraphedNetwork

    net = careamics_unet(4, features=16).cuda()
    model = loaded(net, 4)
    rng = np.random.default_rng(1)
    fields = [rng.normal(100, 10, (4, 200, 236)).astype(np.float32) for _ in range(3)]
    graphed = Predictor(model, bf16=bf16, network_variant=variant, cuda_graphs=True)
    eager = Predictor(model, bf16=bf16, network_variant=variant, cuda_graphs=False)
    assert graphed.cuda_graphs and not eager.cuda_graphs
    for f in fields:  # the first captures, the others replay
        assert np.array_equal(graphed.denoise(f), eager.denoise(f))
    assert isinstance(graphed._graphed, GraphedNetwork) and graphed._graphed.captured == 1
    with torch.inference_mode():
        g = GraphedNetwork(fuse_for_inference(net), bf16=bf16)
        x = torch.randn(2, 4, 64, 64, device="cuda")
        first, second = g(x), g(x)
        assert torch.equal(first, second) and first.data_ptr() != second.data_ptr()  # fresh tensors
