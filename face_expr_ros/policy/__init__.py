"""The VLA policy: network, action tokenizer, runtimes, ONNX / TensorRT export."""
