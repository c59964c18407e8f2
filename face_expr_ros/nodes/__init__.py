"""Thin rclpy nodes: the only package that imports rclpy.

Importing this package (every node executable does, before numpy) limits OpenBLAS to one
thread, unless ``OPENBLAS_NUM_THREADS`` is already set. The nodes' matrices are small (the
tracker's 1404 x 40 fit, the face map's 10 x 55), so extra BLAS threads never pay off, and
OpenBLAS's idle workers busy-wait for the next call: in the face tracker a spinning worker took
60-70 % of a core at 30 Hz (99 % -> 31 % of a core for the same tracking time), and at a
real-time priority it would take that from everything else. See docs/ros.md, "Latency".
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
