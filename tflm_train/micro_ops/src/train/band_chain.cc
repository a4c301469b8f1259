// The band-chain driver: runs a chain of forward CONV_2D / DEPTHWISE_CONV_2D ops band
// by band of output rows of its last op, every intermediate tensor a window of rows.
//
// Rule (tflm_train/planner/bands.py, the planner's and validator's side): for bands
// o = 0, R, 2R, ... the last op computes output rows c = [o, min(o + R, H)); going backwards
// op j needs rows need_j = rows_read(op j+1, c_{j+1}) of its output (the rows op j+1's
// computed rows read) and computes c_j = [max(hi, need_lo), need_hi); going forwards, op j's
// window drops the rows below need_j (the kept rows move to the buffer start) and computes
// c_j after them, so each row is computed once. Version 2.1 files sized the windows by an
// older rule (rows_read of op j+1's whole window): refused at prepare.
// Each computed row is one call of the shared compute core (kernels::conv_rows /
// kernels::dw_channel) on a core whose input pointer, x_h, pad_top and oh describe the
// window's stored rows and the band's output rows: the same arithmetic on the same bytes
// as the unbanded kernels, hence the same results.
#include "band_chain.h"

#include <string.h>

#include "kernels/conv_2d.h"

namespace tt {
namespace train {

int32_t band_rows_of(TrainRuntime& rt, uint32_t k) {
  return rt.meta.i32(rt.meta.table_in(rt.steps, k), tfmt::kStepBandRows, 0);
}

namespace {

uint8_t mode_of(TrainRuntime& rt, uint32_t k) { return rt.meta.u8(rt.meta.table_in(rt.steps, k), tfmt::kStepMode, 0); }

struct BandOp {
  ConvCore core;            // as parsed: the whole stored input and every output row
  bool depthwise = false;
  int32_t m = 1;            // depth multiplier (depthwise)
  int32_t ic = 0;           // stored input channels
  int64_t row_in = 0, row_out = 0;  // bytes of one stored input / output row
  const int8_t* x = nullptr;  // the stored input (op 0: the chain's input)
  int8_t* y = nullptr;        // the output: the chain's output (last op) or this op's window
  int32_t x_tensor = -1, y_tensor = -1;
  int32_t cap = 0;            // rows the window holds (intermediates)
  int32_t lo = 0, hi = 0;     // output rows in the window, at buffer rows [0, hi - lo)
};

struct Chain {
  BandOp ops[kMaxBandOps];
  uint32_t steps[kMaxBandOps];
  int32_t n = 0, rows = 0;
  // A streamed input (plan.stream_input): op 0's input is a window of `in_cap` rows holding
  // input rows [in_lo, in_hi), fetched from `source` instead of computed.
  bool stream = false;
  int32_t in_cap = 0, in_lo = 0, in_hi = 0;
  RowSource* source = nullptr;
};

// Stored input rows [*lo, *hi) that output rows [a, b) of `c` read.
void rows_read(const DwCore& c, int32_t a, int32_t b, int32_t* lo, int32_t* hi) {
  int32_t l = a * c.stride_h - c.pad_top, h = (b - 1) * c.stride_h - c.pad_top + (c.kh - 1) * c.dilation_h + 1;
  if (l < 0) l = 0;
  if (h > c.x_h) h = c.x_h;
  *lo = l;
  *hi = h > l ? h : l;
}

// Output rows [c0, c1) of op j from the rows its input holds now.
void compute(Chain& ch, int32_t j, int32_t c0, int32_t c1) {
  const BandOp& o = ch.ops[j];
  int32_t wlo = 0, whi = o.core.x_h;
  const int8_t* base = o.x;
  if (j == 0 && ch.stream) {
    wlo = ch.in_lo;
    whi = ch.in_hi;
  } else if (j > 0) {
    wlo = ch.ops[j - 1].lo;
    whi = ch.ops[j - 1].hi;
    base = ch.ops[j - 1].y;
  }
  int32_t first = c0 * o.core.stride_h - o.core.pad_top;  // the first stored row these rows read
  if (first < wlo) first = wlo;
  ConvCore c = o.core;
  c.x_h = whi > first ? whi - first : 0;
  c.pad_top = o.core.pad_top + first - c0 * o.core.stride_h;
  c.oh = c1 - c0;
  const int8_t* in = base + (first - wlo) * o.row_in;
  int8_t* out = o.y + (j == ch.n - 1 ? c0 : c0 - o.lo) * o.row_out;
  if (!o.depthwise) {
    c.x = in;
    kernels::conv_rows(c, 0, c1 - c0, out);
    return;
  }
  kernels::dw_interleaved(c, in, o.ic, out);
}

// The lowest stored input row that output rows [c0, c1) of `c` read (-1: none).
int32_t first_tap(const DwCore& c, int32_t c0, int32_t c1) {
  for (int32_t r = c0; r < c1; ++r)
    for (int32_t ky = 0; ky < c.kh; ++ky) {
      const int32_t y = r * c.stride_h - c.pad_top + ky * c.dilation_h;
      if (y >= c.x_h) break;
      if (y >= 0) return y;  // rows only grow with r and ky
    }
  return -1;
}

// A streamed input: before op 0 computes its rows [c0, c1), drop the input rows below those
// they read and fetch the new ones (ascending, each once) from the row source. False if the
// window would outgrow its rows or the source fails (source->failed_row says which row).
bool fetch_rows(Chain& ch, bool execute, int32_t c0, int32_t c1, int32_t* most) {
  const BandOp& o = ch.ops[0];
  int32_t a, b;
  rows_read(o.core, c0, c1, &a, &b);
  int8_t* window = const_cast<int8_t*>(o.x);
  if (a > ch.in_hi) ch.in_lo = ch.in_hi = a;  // nothing kept
  if (a > ch.in_lo) {
    if (execute) memmove(window, window + (a - ch.in_lo) * o.row_in, static_cast<size_t>((ch.in_hi - a) * o.row_in));
    ch.in_lo = a;
  }
  if (b > ch.in_hi) {
    if (execute && b - ch.in_lo > ch.in_cap) return false;
    for (int32_t r = ch.in_hi; execute && r < b; ++r) {
      if (ch.source->fn(ch.source->context, r, window + (r - ch.in_lo) * o.row_in, static_cast<size_t>(o.row_in))) {
        ch.source->failed_row = r;
        return false;
      }
    }
    ch.in_hi = b;
  }
  if (ch.in_hi - ch.in_lo > *most) *most = ch.in_hi - ch.in_lo;
  return true;
}

// The band schedule; with `execute`, also the memmoves, row fetches and kernel calls.
// `most[j]`: the largest window of op j's output; `in_most`: of a streamed input. `gap`
// (may be null): the smallest input offset - output offset at which the last op's writes
// never reach an input row a later band reads (planner/bands.py in_place_gap), INT64_MIN
// if no band reads input after a write. False if a window would outgrow its rows (never,
// once prepare checked most == cap) or the row source failed.
bool run_bands(Chain& ch, bool execute, int32_t* most, int32_t* in_most, int64_t* gap = nullptr) {
  int32_t written = 0;  // output rows of the last op written by the bands so far
  if (gap) *gap = INT64_MIN;
  const int32_t n = ch.n, h = ch.ops[n - 1].core.oh;
  int32_t need_lo[kMaxBandOps], need_hi[kMaxBandOps];
  for (int32_t j = 0; j < n; ++j) {
    ch.ops[j].lo = ch.ops[j].hi = 0;
    most[j] = 0;
  }
  ch.in_lo = ch.in_hi = 0;
  *in_most = 0;
  for (int32_t o0 = 0; o0 < h; o0 = ch.rows < h - o0 ? o0 + ch.rows : h) {
    // need_j: the rows of op j's output that op j+1's computed rows (those it does not hold
    // yet; the last op: its band) read; empty (-1) when op j+1 computes nothing.
    need_lo[n - 1] = o0;
    need_hi[n - 1] = ch.rows < h - o0 ? o0 + ch.rows : h;
    for (int32_t j = n - 1; j > 0; --j) {
      const int32_t c0 = j == n - 1 || need_lo[j] > ch.ops[j].hi ? need_lo[j] : ch.ops[j].hi;
      if (need_lo[j] < 0 || need_hi[j] <= c0) {
        need_lo[j - 1] = need_hi[j - 1] = -1;
        continue;
      }
      rows_read(ch.ops[j].core, c0, need_hi[j], &need_lo[j - 1], &need_hi[j - 1]);
    }
    for (int32_t j = 0; j < n; ++j) {
      const int32_t a = need_lo[j], b = need_hi[j];
      if (j == n - 1) {
        if (execute) compute(ch, j, a, b);
        written = b;
        continue;
      }
      if (a < 0) continue;  // the next op computes nothing in this band
      BandOp& o = ch.ops[j];
      if (j == 0 && ch.stream && b > o.hi && !fetch_rows(ch, execute, a > o.hi ? a : o.hi, b, in_most)) return false;
      if (j == 0 && gap && b > o.hi && written > 0) {
        const int32_t first = first_tap(o.core, a > o.hi ? a : o.hi, b);
        const int64_t need = written * ch.ops[n - 1].row_out - first * o.row_in;
        if (first >= 0 && need > *gap) *gap = need;
      }
      if (a > o.hi) o.lo = o.hi = a;  // nothing kept
      if (a > o.lo) {
        if (execute) memmove(o.y, o.y + (a - o.lo) * o.row_out, static_cast<size_t>((o.hi - a) * o.row_out));
        o.lo = a;
      }
      if (b > o.hi) {
        if (execute && b - o.lo > o.cap) return false;
        if (execute) compute(ch, j, o.hi, b);
        o.hi = b;
      }
      if (o.hi - o.lo > most[j]) most[j] = o.hi - o.lo;
    }
  }
  return true;
}

// Steps and compute cores of the chain ending at the context's step; the context is left
// at the last op's step (call begin_step to return to the chain's step).
tt_status parse_chain(TrainContext& ctx, Chain* ch) {
  TrainRuntime& rt = ctx.runtime();
  const uint32_t last = ctx.step();
  ch->rows = band_rows_of(rt, last);
  uint32_t rev[kMaxBandOps];
  int32_t n = 0;
  for (int64_t j = last; j >= 0; --j) {
    const uint32_t k = static_cast<uint32_t>(j);
    const uint8_t m = mode_of(rt, k);
    if (k < last && m == tfmt::kBandStep && band_rows_of(rt, k) > 0) break;  // the chain before
    if (m == tfmt::kSkip) continue;
    if (m != tfmt::kBandStep) break;
    if (n == kMaxBandOps) return ctx.fail(TT_UNSUPPORTED, "a band chain of more than ", kMaxBandOps, " ops");
    rev[n++] = k;
  }
  if (n < 2) return ctx.fail(TT_MALFORMED_MODEL, "a band chain needs at least two band steps");
  ch->n = n;
  for (int32_t i = 0; i < n; ++i) ch->steps[i] = rev[n - 1 - i];
  tt_status st;
  for (int32_t i = 0; i < n; ++i) {
    if ((st = ctx.begin_step(ch->steps[i])) != TT_OK) return st;
    BandOp& o = ch->ops[i];
    o = BandOp();
    const OpView& op = ctx.op();
    if (op.phase != tfmt::kPhaseForward) return ctx.fail(TT_UNSUPPORTED, "a band chain holds forward ops only");
    Spatial x;
    if (str_equal(op.type, "CONV_2D")) {
      ConvForward p;
      if ((st = parse_conv_forward(ctx, &p)) != TT_OK) return st;
      o.core = p.core;
      x = p.x;
      o.y = p.y;
    } else if (str_equal(op.type, "DEPTHWISE_CONV_2D")) {
      o.depthwise = true;
      if ((st = parse_depthwise_forward(ctx, &o.core, &x, &o.y)) != TT_OK) return st;
      if (x.channel) return ctx.fail(TT_UNSUPPORTED, "a band chain's input in channel storage");
      o.core.x = reinterpret_cast<const int8_t*>(x.data);
      o.core.ic = x.c;
      o.m = o.core.oc / x.c;
    } else {
      return ctx.fail(TT_UNSUPPORTED, "a band chain holds CONV_2D and DEPTHWISE_CONV_2D only");
    }
    o.x = reinterpret_cast<const int8_t*>(x.data);
    o.ic = x.c;
    o.row_in = static_cast<int64_t>(x.w) * x.c;
    o.row_out = static_cast<int64_t>(o.core.ow) * o.core.oc;
    o.x_tensor = x.tensor;
    o.y_tensor = ctx.output(0);
    if (i == 0 && ctx.tensor(x.tensor).storage == tfmt::kBand) {  // a streamed input (prepare checks it is)
      ch->stream = true;
      ch->in_cap = static_cast<int32_t>(ctx.tensor(x.tensor).arena_bytes / (o.row_in > 0 ? o.row_in : 1));
      ch->source = &rt.rows;
    }
    if (o.row_out < 1 || o.row_in < 1) return ctx.fail(TT_UNSUPPORTED, "a band chain op with empty rows");
    if (i < n - 1) o.cap = static_cast<int32_t>(ctx.tensor(o.y_tensor).arena_bytes / o.row_out);
  }
  return TT_OK;
}

}  // namespace

bool band_writes_over(TrainRuntime& rt, int32_t in, int32_t out) {
  FlatReader& r = rt.meta;
  for (uint32_t k = 0; k < rt.step_count; ++k) {
    const Table st = r.table_in(rt.steps, k);
    if (r.u8(st, tfmt::kStepMode, 0) != tfmt::kBandStep || r.i32(st, tfmt::kStepBandRows, 0) <= 0) continue;
    if (r.i32(st, tfmt::kStepInplaceInput, -1) != in) continue;
    const OpView op = decode_op(rt, r.i32(st, tfmt::kStepOp, 0));
    if (op.outputs.length && r.i32_in(op.outputs, 0) == out) return true;
  }
  return false;
}

uint32_t scratch_step_of(TrainRuntime& rt, uint32_t k) {
  if (mode_of(rt, k) != tfmt::kBandStep) return k;
  for (uint32_t j = k; j < rt.step_count; ++j) {
    const uint8_t m = mode_of(rt, j);
    if (m == tfmt::kBandStep && band_rows_of(rt, j) > 0) return j;
    if (m != tfmt::kBandStep && m != tfmt::kSkip) break;
  }
  return k;  // not closed: prepare_steps refuses the plan
}

tt_status prepare_band_chain(TrainContext& ctx) {
  const uint32_t last = ctx.step();
  Chain ch;
  tt_status st = parse_chain(ctx, &ch);
  if (st != TT_OK) return st;
  if ((st = ctx.begin_step(last)) != TT_OK) return st;
  // Each op reads the previous one's output; the intermediates are windows, the output is whole.
  for (int32_t i = 0; i < ch.n; ++i) {
    const BandOp& o = ch.ops[i];
    const TensorDesc x = ctx.tensor(o.x_tensor), y = ctx.tensor(o.y_tensor);
    if (i > 0 && o.x_tensor != ch.ops[i - 1].y_tensor)
      return ctx.fail(TT_MALFORMED_MODEL, "band step ", ch.steps[i], " does not read the previous op's output");
    if (i == 0 && x.storage == tfmt::kBand && !(ctx.runtime().stream_input && o.x_tensor == ctx.runtime().image))
      return ctx.fail(TT_MALFORMED_MODEL, "a band chain's input is a window of another chain");
    if (y.storage != (i < ch.n - 1 ? tfmt::kBand : tfmt::kArena))
      return ctx.fail(TT_MALFORMED_MODEL, "band step ", ch.steps[i], "'s output (tensor ", o.y_tensor, ", storage ",
                      y.storage, ") is not ", i < ch.n - 1 ? "a band window" : "an arena tensor");
    // Every access happens at this step: the plan must have the tensors alive here.
    const OpView self = ctx.switch_op(static_cast<int32_t>(
        ctx.runtime().meta.i32(ctx.runtime().meta.table_in(ctx.runtime().steps, ch.steps[i]), tfmt::kStepOp, 0)));
    for (int32_t k = 0; k < ctx.input_count() && st == TT_OK; ++k)
      if (ctx.input(k) >= 0) st = ctx.reads(ctx.tensor(ctx.input(k)));
    if (st == TT_OK) st = ctx.writes(y);
    ctx.restore_op(self);
    if (st != TT_OK) return st;
  }
  if (ch.rows < 1) return ctx.fail(TT_MALFORMED_MODEL, "band rows ", ch.rows);
  FlatReader& r = ctx.runtime().meta;
  const int32_t minor = r.i32(ctx.runtime().root, tfmt::kTmVersionMinor, 0);
  if (minor < kBandRuleMinor)
    return ctx.fail(TT_UNSUPPORTED, "band chains of training metadata 2.", minor, " size their windows by the older "
                    "rule; this runtime runs the rule of 2.", kBandRuleMinor, " (export the model again)");
  int32_t most[kMaxBandOps], in_most;
  int64_t gap;
  run_bands(ch, false, most, &in_most, &gap);
  if (ch.stream && in_most != ch.in_cap)
    return ctx.fail(TT_MALFORMED_MODEL, "the streamed input's window holds ", ch.in_cap, " rows, the chain's bands need ",
                    in_most);
  // The output written over the input (inplace_input of the last step): the input has no
  // reader after the chain, and the output lies at least `gap` bytes below it, so no input
  // row is overwritten before its last read (check_overlaps lets this pair overlap).
  const int32_t over = ctx.runtime().meta.i32(ctx.runtime().meta.table_in(ctx.runtime().steps, last),
                                              tfmt::kStepInplaceInput, -1);
  if (over >= 0) {
    const TensorDesc x = ctx.tensor(ch.ops[0].x_tensor), y = ctx.tensor(ch.ops[ch.n - 1].y_tensor);
    if (over != ch.ops[0].x_tensor || x.storage != tfmt::kArena)
      return ctx.fail(TT_MALFORMED_MODEL, "band chain of step ", last, " writes over tensor ", over,
                      ", not its input (tensor ", ch.ops[0].x_tensor, ")");
    if (x.last_step != static_cast<int32_t>(last))
      return ctx.fail(TT_MALFORMED_MODEL, "band chain of step ", last, " writes over its input, which is read up to step ",
                      x.last_step);
    if (gap != INT64_MIN && x.offset - y.offset < gap)
      return ctx.fail(TT_MALFORMED_MODEL, "band chain of step ", last, " writes its output ", x.offset - y.offset,
                      " bytes below its input, its bands need at least ", gap);
  }
  for (int32_t i = 0; i < ch.n - 1; ++i)
    if (most[i] != ch.ops[i].cap)
      return ctx.fail(TT_MALFORMED_MODEL, "band window of step ", ch.steps[i], " holds ", ch.ops[i].cap,
                      " rows, the chain's bands need ", most[i]);
  return TT_OK;
}

tt_status eval_band_chain(TrainContext& ctx) {
  const uint32_t last = ctx.step();
  Chain ch;
  tt_status st = parse_chain(ctx, &ch);
  if (st != TT_OK) return st;
  int32_t most[kMaxBandOps], in_most;
  if (ch.stream && !ch.source->fn) return ctx.fail(TT_INVALID_ARGUMENT, "the plan streams its input: no row source");
  const bool ok = run_bands(ch, true, most, &in_most);
  if ((st = ctx.begin_step(last)) != TT_OK) return st;
  if (!ok && ch.stream && ch.source->failed_row >= 0)
    return ctx.fail(TT_INVALID_ARGUMENT, "the row source failed at input row ", ch.source->failed_row,
                    ": call abandoned, no parameter changed");
  if (!ok) return ctx.fail(TT_MALFORMED_MODEL, "a band window outgrew its rows");
  return TT_OK;
}

}  // namespace train
}  // namespace tt
