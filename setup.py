"""Build script for the face_expr_ros ROS 2 package (ament_python) and pip installs."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "face_expr_ros"


def share_tree(folder: str) -> list[tuple[str, list[str]]]:
    """Install every file under ``folder`` into share/<package>/<folder>, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name != ".gitkeep":
            entries.setdefault(str(Path("share", PACKAGE, path.parent)), []).append(str(path))
    return sorted(entries.items())


# One console script per node (what `ros2 run face_expr_ros <name>` starts).
NODES: dict[str, str] = {
    f"{name}_node": f"face_expr_ros.nodes.{name}:main"
    for name in ("face_tracker", "speech", "policy", "face_driver", "avatar", "webcam", "microphone",
                 "bag_player", "bag_recorder")
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["rig/data/*", "py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_tree("config"),
        *share_tree("launch"),
        *share_tree("models"),
        *share_tree("engines"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="face_expr_ros maintainers",
    maintainer_email="maintainers@face-expr-ros.org",
    description="Natural listener facial expressions for social robots, learned from people.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "face-expr = face_expr_ros.cli:main",
            *(f"{name} = {target}" for name, target in NODES.items()),
        ],
    },
)
