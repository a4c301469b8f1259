"""Locations of the shared data the tests use (../shared beside the repository)."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
MODELS = os.path.join(SHARED, "models")
SCHEMES = os.path.join(SHARED, "schemes")
SEED_MODELS = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
PERSON_DETECT = os.path.join(MODELS, "person_detect.tflite")


def seed_model(name: str) -> str:
    return os.path.join(MODELS, name + ".npz")
