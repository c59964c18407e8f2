"""face_expr_ros: natural listener facial expressions for social robots, learned from people."""

__version__ = "0.1.0"
