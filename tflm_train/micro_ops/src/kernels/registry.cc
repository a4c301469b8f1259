// The kernels the runtime knows. A new kernel (backward, update, float op) is
// one file defining a `const Kernel` and one line in each list below.
#include <string.h>

#include "../runtime.h"

namespace tt {

extern const Kernel kAdd;
extern const Kernel kAveragePool2D;
extern const Kernel kConcatenation;
extern const Kernel kConv2D;
extern const Kernel kDepthwiseConv2D;
extern const Kernel kDequantize;
extern const Kernel kFullyConnected;
extern const Kernel kLeakyRelu;
extern const Kernel kMaxPool2D;
extern const Kernel kMean;
extern const Kernel kPad;
extern const Kernel kQuantize;
extern const Kernel kRelu;
extern const Kernel kRelu6;
extern const Kernel kReshape;
extern const Kernel kSoftmax;

namespace {

// Constant-initialized (no global constructor): an array of addresses.
const Kernel* const kKernels[] = {
    &kAdd,     &kAveragePool2D, &kConv2D, &kDepthwiseConv2D, &kDequantize, &kFullyConnected,
    &kMaxPool2D, &kMean,        &kPad,    &kQuantize,        &kReshape,    &kSoftmax,
    &kConcatenation, &kRelu, &kRelu6, &kLeakyRelu,
};

bool same_name(const char* a, Str b) {
  return a && strlen(a) == b.length && (b.length == 0 || memcmp(a, b.data, b.length) == 0);
}

}  // namespace

const Kernel* find_kernel(int32_t builtin, Str custom_name) {
  for (const Kernel* k : kKernels) {
    if (k->builtin != builtin) continue;
    if (builtin != schema::kOpCustom || same_name(k->custom_name, custom_name)) return k;
  }
  return nullptr;
}

}  // namespace tt
