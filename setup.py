from setuptools import find_packages, setup

setup(
    name="tflm_train",
    version="0.1.0",
    description="On-device training for TensorFlow Lite Micro: QAS, sparse updates, planned memory",
    packages=find_packages(include=["tflm_train", "tflm_train.*"]),
    package_data={"tflm_train": ["data/*", "schema/*.fbs", "micro_ops/**/*"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "flatbuffers>=24.3.25",
        "ai-edge-litert==2.3.0",
    ],
    entry_points={"console_scripts": ["tflm-train=tflm_train.cli:main"]},
)
