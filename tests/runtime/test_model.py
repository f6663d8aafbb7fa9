"""The runtime's decisions, without a model: eligibility, the auto rate, AMX detection, and reading
executed kernel types from profiling data of both kinds (dense AVX-512 recorded here; AMX sparse)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pofa_openvino.quantize import zero_preservation
from pofa_openvino.runtime.model import Int8Weight, auto_rate, cpu, explain, kernel_summary

DATA = Path(__file__).parents[1] / "data"


def _profiling(name: str) -> list[tuple[str, str]]:
    rows = json.loads((DATA / name).read_text())["profiling"]
    return [(row["node_type"], row["exec_type"]) for row in rows]


@pytest.mark.parametrize("shape, eligible", [((64, 64), True), ((128, 384), True), ((2, 64), False),
                                             ((64, 100), False), ((768, 3072), True)])
def test_only_layers_with_both_dims_multiples_of_64_are_eligible(shape, eligible):
    assert Int8Weight("m", "layer", np.zeros(shape, np.int8)).shape_eligible is eligible


@pytest.mark.parametrize("fractions, rate", [
    ([0.9, 0.93, 0.95], 0.9), ([0.899, 0.95], 0.85), ([0.874, 0.9], 0.85), ([0.5], 0.5),
    ([0.49, 0.9], None), ([], None), ([0.9999], 0.95),
])
def test_auto_rate_is_the_lowest_fraction_rounded_down_to_005_never_below_half(fractions, rate):
    assert auto_rate(fractions) == rate


def test_amx_is_read_from_the_cpu_flags():
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    assert cpu()["amx"] == ("amx_int8" in flags.split() and "amx_tile" in flags.split())


def test_dense_avx512_kernels_count_no_sparse_layer():
    summary = kernel_summary(_profiling("profiling_avx512_dense_int8.json"))
    assert summary == {"kernel_types": {"brgemm_avx512_I8": 7, "brgemm_avx512_i8": 7}, "sparse_layers_active": 0}
    note = explain(amx=False, rate=0.85, eligible=12, active=0, cpu_name="AMD EPYC")
    assert "inactive" in note and "no AMX" in note


def test_amx_sparse_kernels_are_counted_as_active():
    summary = kernel_summary(_profiling("profiling_amx_sparse_int8.json"))
    assert summary["sparse_layers_active"] == 12
    assert summary["kernel_types"] == {"brgemm_avx512_amx_I8": 2, "brgemm_avx512_amx_sparse_I8": 12}
    assert explain(amx=True, rate=0.85, eligible=12, active=12, cpu_name="Xeon").startswith("sparse weight "
                                                                                          "decompression active")


def test_amx_without_a_sparse_kernel_says_which_check_failed():
    assert "no INT8 layer" in explain(amx=True, rate=0.9, eligible=0, active=0, cpu_name="Xeon")
    assert "off" in explain(amx=True, rate=None, eligible=0, active=0, cpu_name="Xeon")


def test_zero_preservation_counts_float_zeros_that_came_back():
    float_weight = np.array([[0.0, 0.5], [0.0, -0.2]] * 32, dtype=np.float32)
    kept = np.where(float_weight == 0, 0, 7).astype(np.int8)
    revived = kept.copy()
    revived[0, 0] = 1
    layers = zero_preservation({"a": float_weight, "b": float_weight},
                               [Int8Weight("A", "a", kept), Int8Weight("B", "b", revived)])
    assert layers["a"]["revived_zeros"] == 0 and layers["b"]["revived_zeros"] == 1
    assert layers["a"]["int8_zero_fraction"] == 0.5 and layers["a"]["eligible_for_sparse"] is False


def test_the_runtime_imports_without_torch_or_transformers():
    code = ("import sys, pofa_openvino.runtime.model; "
            "print(sorted(m for m in ('torch', 'transformers', 'nncf', 'neural_compressor') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
