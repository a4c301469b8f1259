import glob
import os

from setuptools import Extension, find_packages, setup

_MICRO_OPS = os.path.join("tflm_train", "micro_ops")

# The C++ micro runtime as a shared library (loaded by tflm_train.micro with ctypes).
micro_runtime = Extension(
    "tflm_train.micro._runtime",
    sources=sorted(
        glob.glob(os.path.join(_MICRO_OPS, "src", "**", "*.cc"), recursive=True)
    )
    + [os.path.join(_MICRO_OPS, "port", "python", "module.cc")],
    include_dirs=[os.path.join(_MICRO_OPS, "include")],
    # -ffp-contract=off: no fused multiply-add, the float32 training arithmetic is specified op by op.
    # -O3 (auto-vectorization) for the compiler's baseline x86-64 target: no -march, so the library
    # runs on any CI machine.
    extra_compile_args=["-std=c++17", "-O3", "-fno-exceptions", "-fno-rtti", "-ffp-contract=off"],
    language="c++",
)

setup(
    name="tflm_train",
    version="0.1.0",
    description="On-device training for TensorFlow Lite Micro: QAS, sparse updates, planned memory",
    packages=find_packages(include=["tflm_train", "tflm_train.*"]),
    package_data={"tflm_train": ["data/*", "schema/*.fbs", "micro_ops/**/*", "arduino/library/**/*"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "flatbuffers>=24.3.25",
        "ai-edge-litert==2.3.0",
    ],
    entry_points={"console_scripts": ["tflm-train=tflm_train.cli:main"]},
    ext_modules=[micro_runtime],
)
