"""Load and run a .tflite model with whichever TFLite interpreter the device has.

LiteRT (ai-edge-litert) is the device dependency; tflite-runtime covers older boards and
TensorFlow is the last resort, imported only when neither exists so the edge runtime never
pulls TensorFlow in by accident. ``TFLiteModel`` hides quantisation: callers pass and get
float arrays keyed by the names the exporter gave the model's inputs and outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SiamfaceError


def interpreter_class() -> tuple[type, str]:
    """The first TFLite ``Interpreter`` class that imports, and its package name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise SiamfaceError(
            "no TFLite interpreter installed: pip install ai-edge-litert "
            "(or tflite-runtime, or tensorflow)"
        ) from None
    return tf.lite.Interpreter, "tensorflow"


def interpreter_backend() -> str:
    """Which interpreter package ``load_interpreter`` uses: ai-edge-litert, tflite-runtime or tensorflow."""
    return interpreter_class()[1]


def load_interpreter(model_path: str | Path, num_threads: int = 1):
    """An interpreter for ``model_path`` (not yet allocated); SiamfaceError if the file is missing or not a model."""
    path = Path(model_path)
    if not path.is_file():
        raise SiamfaceError(f"{path}: TFLite model file not found; check the path or re-export the model")
    interpreter_cls, _ = interpreter_class()
    try:
        return interpreter_cls(model_path=str(path), num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:
        raise _invalid(path, exc) from None


def _invalid(path: Path, exc: Exception) -> SiamfaceError:
    """LiteRT/XNNPACK reject a damaged model with ValueError or RuntimeError (several lines): one line."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SiamfaceError(f"{path}: not a valid TFLite model ({first_line}); re-export it or replace the file")


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: its name, interpreter index, shape, dtype and affine quantisation."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


def _infos(details: list[dict], names: dict[int, str]) -> list[TensorInfo]:
    return [
        TensorInfo(
            name=names.get(d["index"], d["name"]),
            index=int(d["index"]),
            shape=tuple(int(s) for s in d["shape"]),
            dtype=np.dtype(d["dtype"]),
            scale=float(d["quantization"][0]),
            zero_point=int(d["quantization"][1]),
        )
        for d in details
    ]


def _signature_names(interpreter) -> tuple[dict[int, str], dict[int, str]]:
    """Tensor index -> signature name for inputs and outputs (the Keras names), when there is one signature."""
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return {}, {}
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    return (
        {d["index"]: name for name, d in runner.get_input_details().items()},
        {d["index"]: name for name, d in runner.get_output_details().items()},
    )


def _describe(interpreter) -> tuple[list[TensorInfo], list[TensorInfo]]:
    input_names, output_names = _signature_names(interpreter)
    return (_infos(interpreter.get_input_details(), input_names),
            _infos(interpreter.get_output_details(), output_names))


def model_signature(model_path: str | Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) as the model file declares them, read without allocating tensors (a few ms,
    where allocation with XNNPACK takes 30-200 ms): what a bundle checks its model against."""
    path = Path(model_path)
    try:
        return _describe(load_interpreter(path))
    except (ValueError, RuntimeError) as exc:
        raise _invalid(path, exc) from None


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float values -> the integer dtype of a quantised tensor (round, add zero point, saturate)."""
    limits = np.iinfo(info.dtype)
    q = np.round(np.asarray(values, dtype=np.float64) / info.scale) + info.zero_point
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Quantised integers -> float32 real values."""
    return ((values.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)).astype(np.float32)


class TFLiteModel:
    """A .tflite model allocated once; ``run`` takes and returns arrays keyed by tensor name."""

    def __init__(self, model_path: str | Path, num_threads: int = 1):
        self.path = Path(model_path)
        self._interpreter = load_interpreter(self.path, num_threads)
        try:
            self._interpreter.allocate_tensors()  # XNNPACK rewrites the graph here: damaged models fail here
        except (ValueError, RuntimeError) as exc:
            raise _invalid(self.path, exc) from None
        self.inputs, self.outputs = _describe(self._interpreter)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def _prepare(self, info: TensorInfo, value) -> np.ndarray:
        array = np.asarray(value)
        if tuple(array.shape) != info.shape:
            raise ValueError(f"{self.path.name}: input {info.name!r} needs shape {info.shape}, got {array.shape}")
        if array.dtype == info.dtype:
            return array
        if array.dtype == np.uint8 and info.dtype == np.int8 and (info.scale, info.zero_point) == (1.0, -128):
            return (array ^ np.uint8(0x80)).view(np.int8)  # pixels as int8 (p - 128): no float round trip
        if info.quantized:
            return quantize(array, info)
        return array.astype(info.dtype)

    def run(self, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Invoke the model on real-valued inputs (uint8 pixels count as 0..255, quantised for an
        int8 input); integer outputs with quantisation come back as float32 real values."""
        if not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                raise ValueError(f"{self.path.name} has inputs {self.input_names}: pass a dict")
            inputs = {self.inputs[0].name: inputs}
        missing = set(self.input_names) - set(inputs)
        unknown = set(inputs) - set(self.input_names)
        if missing or unknown:
            raise ValueError(f"{self.path.name}: inputs are {self.input_names}, got {sorted(inputs)}")
        for info in self.inputs:
            self._interpreter.set_tensor(info.index, self._prepare(info, inputs[info.name]))
        try:
            self._interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise _invalid(self.path, exc) from None
        results = {}
        for info in self.outputs:
            value = self._interpreter.get_tensor(info.index)
            results[info.name] = dequantize(value, info) if info.quantized else value.copy()
        return results
