"""The one bridge to NNCF: INT8 post-training quantization of an IR, and the check that no zero of the
float weights came back.

``static`` quantizes weights *and* activations (what OpenVINO's sparse INT8 kernels need);
``weight_only`` compresses weights alone (smaller, but never sparse-decompressed); NNCF's INT8
weights are symmetric with zero point 0, so an exact zero stays zero, which :func:`zero_preservation`
verifies layer by layer rather than assumes."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .runtime.model import IR_FILE, Int8Weight

log = logging.getLogger(__name__)

# INC op types (op_type_dict keys) as the IR names them.
_IR_TYPES = {"Linear": "MatMul", "MatMul": "MatMul", "Embedding": "Gather", "LayerNorm": "MVN", "Softmax": "SoftMax"}


Metric = Callable[[list[dict[str, np.ndarray]]], float]  # outputs by name, one dict per validation input


def quantize_ir(fp32_dir: Path, out_file: Path, section: Any, calibration: list[dict[str, np.ndarray]],
                validation: tuple[list[dict[str, np.ndarray]], Metric] | None = None) -> None:
    """Quantize ``fp32_dir``'s IR as the recipe's ``quantization`` section says and save it to ``out_file``
    (float weights that stay float, the embeddings, are stored as FP16). With an ``accuracy_criterion``,
    ``validation`` (inputs and the task metric over their outputs) lets NNCF revert layers to float
    until the metric drops no more than the criterion allows."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(Path(fp32_dir) / IR_FILE)
    names = {i.get_any_name() for i in model.inputs}  # a tokenizer may give more (token_type_ids for DistilBERT)
    calibration = [{k: v for k, v in sample.items() if k in names} for sample in calibration]
    if section.approach == "static":
        common = dict(model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                      ignored_scope=ignored_scope(section))
        advanced = _advanced(section)
        if section.accuracy_criterion is None:
            model = nncf.quantize(model, nncf.Dataset(calibration), advanced_parameters=advanced, **common)
        else:
            inputs, metric = validation
            criterion = section.accuracy_criterion
            model = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(calibration), nncf.Dataset([{k: v for k, v in x.items() if k in names}
                                                                for x in inputs]),
                validation_fn=lambda compiled, samples: (metric(_outputs(compiled, samples)), None),
                max_drop=criterion.tolerable_loss,
                drop_type=nncf.DropType.RELATIVE if criterion.criterion == "relative" else nncf.DropType.ABSOLUTE,
                advanced_quantization_parameters=advanced, **common)
    elif section.approach == "weight_only":
        log.warning("quantization.approach weight_only: INT8 weights, float activations. OpenVINO's sparse "
                    "weight decompression needs INT8 activations too (approach: static) and will not apply")
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM,
                                      ignored_scope=ignored_scope(section))
    ov.save_model(model, out_file)


def _outputs(compiled: Any, samples: Any) -> list[dict[str, np.ndarray]]:
    return [{port.get_any_name(): value for port, value in compiled(sample).items()} for sample in samples]


def ignored_scope(section: Any) -> Any:
    """INC's ``op_name_dict`` / ``op_type_dict`` entries that ask for fp32, as an NNCF ignored scope.
    Names are the torch module names (regular expressions, as INC matches them)."""
    import nncf

    def wants_fp32(override: Any) -> bool:
        return any(setting is not None and setting.dtype == ["fp32"]
                   for setting in (override.activation, override.weight))

    patterns = [rf"^__module\.(?:{name})/.*" for name, o in section.op_name_dict.items() if wants_fp32(o)]
    types = [_IR_TYPES.get(name, name) for name, o in section.op_type_dict.items() if wants_fp32(o)]
    return nncf.IgnoredScope(patterns=patterns, types=types, validate=False)


def zero_preservation(float_weights: dict[str, np.ndarray], int8: list[Int8Weight]) -> dict[str, dict[str, Any]]:
    """Per source Linear: the INT8 zero fraction, whether the sparse kernel could take the layer, and
    how many exact zeros of the float weight became non-zero (must be 0)."""
    layers = {}
    for weight in int8:
        source = float_weights.get(weight.source or "")
        if source is None or source.shape != weight.values.shape:
            continue
        layers[weight.source] = {"int8_zero_fraction": round(weight.zero_fraction, 6),
                                 "eligible_for_sparse": weight.shape_eligible,
                                 "revived_zeros": int(((source == 0) & (weight.values != 0)).sum())}
    return layers


def calibration_batches(data: Any, tokenizer: Any, max_length: int, size: int) -> list[dict[str, Any]]:
    """``size`` training items of the task, one per batch (natural lengths), as torch model inputs."""
    batches = [data.collate(tokenizer, [item], max_length) for item in data.train_items(tokenizer, max_length)[:size]]
    return [{name: value for name, value in batch.items() if name not in data.targets} for batch in batches]


def quantization_aware(model: Any, calibration: list[dict[str, Any]], section: Any) -> Any:
    """NNCF's fake-quantized torch model, calibrated as static INT8 is: trainable, so fine-tuning can
    adapt the weights to INT8 (with the zero masks locked by INC's pattern_lock while it trains).

    NNCF compiles a C++ extension on first use; on a small or busy CPU that takes longer than NNCF's
    60 s default limit, so the limit is raised unless the user set one."""
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    log.info("QAT: NNCF compiles its torch extension on first use (about a minute, cached afterwards)")
    import nncf

    return nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(calibration), advanced_parameters=_advanced(section))


def _advanced(section: Any) -> Any:
    """SmoothQuant only when the recipe asks (NNCF's transformer preset would apply it by default)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    alpha = section.recipes.smooth_quant_args.alpha if section.recipes.smooth_quant else -1.0
    return AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))


def compress_embeddings(ir_file: Path, out_file: Path) -> bool:
    """INT8 (symmetric, per row) weight-only compression of every float embedding table (the Gather
    weights; MatMuls are left as they are, so their zeros and INT8 kernels are untouched). Returns whether
    anything was compressed: NNCF's static INT8 already quantizes the embeddings of most encoders."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(ir_file)
    before = _float_constant_bytes(model)
    # NNCF prints its bit-width table even when nothing is compressed; nncf.set_log_level would also
    # change the level of handlers it does not own, so only its logger's level is raised, and restored.
    quiet = logging.getLogger("nncf")
    previous = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM,
                                           ignored_scope=nncf.IgnoredScope(types=["MatMul"]))
    finally:
        quiet.setLevel(previous)
    ov.save_model(compressed, out_file, compress_to_fp16=False)
    return _float_constant_bytes(compressed) < before


def _float_constant_bytes(model: Any) -> int:
    return sum(op.get_byte_size() for op in model.get_ordered_ops()
               if op.get_type_name() == "Constant" and op.get_element_type().is_real())
