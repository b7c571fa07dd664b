"""lstm-edge: PyTorch LSTM models to ONNX and TFLite with named state, int8, and a streaming runtime.

Subpackages follow the pipeline: ``lstm_edge.export`` -> ``lstm_edge.quantize`` -> ``lstm_edge.runtime``
-> ``lstm_edge.devices``. Only ``lstm_edge.runtime`` goes on the device (numpy plus one inference engine).
"""

__version__ = "0.1.0"
