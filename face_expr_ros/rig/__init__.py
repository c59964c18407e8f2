"""The face model: a linear 3DMM on the MediaPipe face-mesh topology, and its renderers."""
