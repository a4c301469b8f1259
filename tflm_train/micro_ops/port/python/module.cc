// Makes the runtime library a Python extension module so that setuptools
// builds and installs it with the package. The binding
// (tflm_train/micro/__init__.py) loads this same shared library with ctypes
// and calls the C API (include/tflm_train.h): one interface for every host.
#include <Python.h>

static struct PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "_runtime", "tflm-train micro runtime (C API used through ctypes)", -1, nullptr,
    nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__runtime(void) { return PyModule_Create(&kModule); }
