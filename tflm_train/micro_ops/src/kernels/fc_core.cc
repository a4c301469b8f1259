// FULLY_CONNECTED's compute core (fc_core.h): TFLite Micro's reference integer fully
// connected layer, unit by unit.
#include "fc_core.h"

namespace tt {

void fc_rows(const FcCore& p, int8_t* out) {
  for (int32_t r = 0; r < p.rows; ++r) {
    const int8_t* x = p.x + static_cast<int64_t>(r) * p.depth;
    for (int32_t u = 0; u < p.units; ++u) {
      const int8_t* w = p.w + static_cast<int64_t>(u) * p.depth;
      const int8_t* w_ram = p.w_ram + static_cast<int64_t>(u) * p.nsel;
      int32_t acc = 0;
      for (int32_t k = 0; k < p.depth; ++k) {
        int32_t wk = w[k];
        if (p.sel) {
          const int32_t j = split_slot(p.sel, p.nsel, k);
          if (j >= 0) wk = w_ram[j];
        }
        acc += (x[k] + p.in_offset) * (wk + p.filter_offset);
      }
      out[static_cast<int64_t>(r) * p.units + u] = requantize(p.tail, channel_quant(p.tail, u), acc);
    }
  }
}

}  // namespace tt
