// Makes the runtime library a Python extension module so that setuptools
// builds and installs it with the package. The binding
// (tflm_train/micro/__init__.py) loads this same shared library with ctypes
// and calls the C API (include/tflm_train.h): one interface for every host.
//
// It is also the host's port of the profiling hook (src/profile_hook.h): while
// a buffer is given by tt_host_profile_start, every executed op appends
// (op index, thread CPU time in ns) to it.
#include <Python.h>
#include <stdint.h>
#include <time.h>

#include "../../src/profile_hook.h"

namespace {

// Per thread: two interpreters profiled on two threads do not mix their readings.
thread_local uint64_t* g_readings = nullptr;
thread_local uint32_t g_capacity = 0;
thread_local uint32_t g_count = 0;

uint64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

void record(uint64_t what) {
  if (g_readings == nullptr || g_count >= g_capacity) return;
  g_readings[2 * g_count] = what;
  g_readings[2 * g_count + 1] = thread_cpu_ns();
  ++g_count;
}

}  // namespace

extern "C" {

// Starts recording into readings[2 * capacity] (pairs: op index, ns); the first pair is the
// start (index UINT64_MAX).
__attribute__((visibility("default"))) void tt_host_profile_start(uint64_t* readings, uint32_t capacity) {
  g_readings = readings;
  g_capacity = capacity;
  g_count = 0;
  record(UINT64_MAX);
}

// Stops recording; the number of pairs written (more ops than the capacity are dropped).
__attribute__((visibility("default"))) uint32_t tt_host_profile_stop(void) {
  const uint32_t n = g_count;
  g_readings = nullptr;
  g_capacity = g_count = 0;
  return n;
}

void tt_profile_step_end(uint32_t step) { record(step); }

}  // extern "C"

static struct PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "_runtime", "tflm-train micro runtime (C API used through ctypes)", -1, nullptr,
    nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__runtime(void) { return PyModule_Create(&kModule); }
