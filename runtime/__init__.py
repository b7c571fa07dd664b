"""The on-device runtime: numpy plus one inference engine; never torch or onnx.

    from lstm_edge.runtime import StreamingModel
    model = StreamingModel.load("model_dir", backend="onnx", precision="float")
    stream = model.create_stream()
    y = stream.push(chunk)      # state carried between pushes
    batch = model.create_batch(16)
    ys = batch.push(chunks)     # one chunk per stream, one call for all of them
"""

from lstm_edge.runtime.batch import BatchPushError, StreamBatch
from lstm_edge.runtime.errors import (
    BackendUnavailableError,
    ConcurrentUseError,
    InputError,
    LstmEdgeError,
    ManifestError,
    ModelFileError,
    NonFiniteResultError,
)
from lstm_edge.runtime.manifest import Manifest
from lstm_edge.runtime.model import StreamingModel
from lstm_edge.runtime.state import State
from lstm_edge.runtime.stream import Stream

__all__ = [
    "StreamingModel",
    "Stream",
    "StreamBatch",
    "BatchPushError",
    "State",
    "Manifest",
    "LstmEdgeError",
    "InputError",
    "ManifestError",
    "ModelFileError",
    "BackendUnavailableError",
    "ConcurrentUseError",
    "NonFiniteResultError",
]
