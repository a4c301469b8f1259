// Reference compute cores (the specification; see conv_core.h): TFLite Micro's
// reference integer convolution and depthwise convolution, tap by tap:
//   acc = sum over the window's taps inside the input of (x + input_offset) * w
//   y   = clamp(MultiplyByQuantizedMultiplier(acc + bias, M[c]) + output_offset)
// Split trained channels: the flash value is replaced by the SRAM one, which in
// int32 is adding (x + offset) * (w_ram - w_flash).
#include "conv_core.h"

namespace tt {
namespace reference {
namespace {

int32_t window_sum(const ConvCore& p, int32_t oc, int32_t oy, int32_t ox) {
  const int32_t y0 = oy * p.stride_h - p.pad_top;
  const int32_t x0 = ox * p.stride_w - p.pad_left;
  int32_t acc = 0;
  for (int32_t ky = 0; ky < p.kh; ++ky) {
    const int32_t iy = y0 + ky * p.dilation_h;
    if (iy < 0 || iy >= p.x_h) continue;  // padding: the zero point adds nothing
    for (int32_t kx = 0; kx < p.kw; ++kx) {
      const int32_t ix = x0 + kx * p.dilation_w;
      if (ix < 0 || ix >= p.x_w) continue;
      const int32_t row = (oc * p.kh + ky) * p.kw + kx;
      const int8_t* in = p.x + (static_cast<int64_t>(iy) * p.x_w + ix) * p.ic;
      const int8_t* w = p.w + static_cast<int64_t>(row) * p.ic;
      for (int32_t c = 0; c < p.ic; ++c) acc += (in[c] + p.in_offset) * w[c];
      if (p.sel) {
        const int8_t* t = p.w_ram + static_cast<int64_t>(row) * p.nsel;
        for (int32_t j = 0; j < p.nsel; ++j) {
          const int32_t c = core_load_i32(p.sel + 4 * j);
          acc += (in[c] + p.in_offset) * (t[j] - w[c]);
        }
      }
    }
  }
  return acc;
}

}  // namespace

void conv_pixel(const ConvCore& p, int32_t oy, int32_t ox, int8_t* out) {
  for (int32_t oc = 0; oc < p.oc; ++oc)
    out[oc] = requantize(p.tail, channel_quant(p.tail, oc), window_sum(p, oc, oy, ox));
}

void conv_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out) {
  for (int32_t oy = oy0; oy < oy1; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) conv_pixel(p, oy, ox, out + (static_cast<int64_t>(oy - oy0) * p.ow + ox) * p.oc);
}

void conv_pixels(const ConvCore& p, int32_t i0, int32_t n, int8_t* out) {
  for (int32_t i = i0; i < i0 + n; ++i) conv_pixel(p, i / p.ow, i % p.ow, out + static_cast<int64_t>(i - i0) * p.oc);
}

void conv_pointwise_channels(const ConvCore& p, int32_t oc0, int32_t n, int8_t* out, int32_t out_stride) {
  for (int32_t oc = oc0; oc < oc0 + n; ++oc) {
    const ChannelQuant q = channel_quant(p.tail, oc);
    for (int32_t oy = 0; oy < p.oh; ++oy)
      for (int32_t ox = 0; ox < p.ow; ++ox)
        out[(static_cast<int64_t>(oy) * p.ow + ox) * out_stride + oc - oc0] =
            requantize(p.tail, q, window_sum(p, oc, oy, ox));
  }
}

void dw_channel(const DwCore& p, int32_t oc, const int8_t* in, int32_t in_stride, int8_t* out, int32_t out_stride) {
  const int8_t* w = p.w + oc;
  int32_t wstride = p.oc;
  if (p.sel) {
    const int32_t j = split_slot(p.sel, p.nsel, oc);
    if (j >= 0) {
      w = p.w_ram + j;
      wstride = p.nsel;
    }
  }
  const ChannelQuant q = channel_quant(p.tail, oc);
  for (int32_t oy = 0; oy < p.oh; ++oy) {
    const int32_t y0 = oy * p.stride_h - p.pad_top;
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      const int32_t x0 = ox * p.stride_w - p.pad_left;
      int32_t acc = 0;
      for (int32_t ky = 0; ky < p.kh; ++ky) {
        const int32_t iy = y0 + ky * p.dilation_h;
        if (iy < 0 || iy >= p.x_h) continue;
        for (int32_t kx = 0; kx < p.kw; ++kx) {
          const int32_t ix = x0 + kx * p.dilation_w;
          if (ix < 0 || ix >= p.x_w) continue;
          acc += (in[(iy * p.x_w + ix) * in_stride] + p.in_offset) * w[(ky * p.kw + kx) * wstride];
        }
      }
      out[(static_cast<int64_t>(oy) * p.ow + ox) * out_stride] = requantize(p.tail, q, acc);
    }
  }
}

bool dw_four_channels(const DwCore&, int32_t, const int8_t*, int32_t, int8_t*) { return false; }
bool dw_four_channel_path(const DwCore&) { return false; }

void dw_interleaved(const DwCore& p, const int8_t* in, int32_t ic, int8_t* out) {
  const int32_t m = p.oc / ic;
  for (int32_t oc = 0; oc < p.oc; ++oc) dw_channel(p, oc, in + oc / m, ic, out + oc, p.oc);
}

}  // namespace reference
}  // namespace tt
