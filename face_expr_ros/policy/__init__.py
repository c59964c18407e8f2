"""The VLA policy: network, action tokenizer, runtimes, ONNX / TensorRT export.

Modules (import them directly; this package imports nothing heavy so that nodes start fast):

* ``tokenizer``  -- ActionTokenizer: percentile bins, keyframe chunk codec, JSON + sha256
* ``network``    -- PolicyConfig, ListenerPolicy (encoders, causal transformer, factorised head)
* ``sampling``   -- temperature / top-p sampling in numpy, exact log-probabilities
* ``export``     -- ONNX export (policy.onnx + policy_head.onnx) and parity report
* ``backends``   -- PyTorch, ONNX Runtime and TensorRT back-ends, engine cache
* ``model_dir``  -- save / load / check a policy directory
* ``runtime``    -- Observation, Policy.step at 30 Hz with chunk blending
* ``fixtures``   -- untrained policies with spread logits for tests and benchmarks

Design and measurements: docs/policy.md.
"""
