"""Thin rclpy nodes: the only package that imports rclpy."""
