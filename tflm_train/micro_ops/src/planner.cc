#include "planner.h"

namespace tt {

namespace {

// A buffer to place: tensor b (b < tensor_count) or the scratch of node
// b - tensor_count. Lifetimes are inclusive op ranges.
struct Buffer {
  uint32_t bytes;
  uint16_t first;
  uint16_t last;
  bool needed;
};

Buffer buffer_of(const Runtime& rt, uint32_t b) {
  Buffer buf = {0, 0, 0, false};
  if (b < rt.tensor_count) {
    const TensorRec& t = rt.tensors[b];
    if ((t.flags & kConstant) || t.first_use == kNoOp) return buf;
    buf.bytes = t.bytes;
    buf.first = t.first_use;
    buf.last = t.last_use;
  } else {
    const uint32_t n = b - rt.tensor_count;
    const NodeRec& node = rt.nodes[n];
    if (node.scratch_bytes == 0) return buf;
    buf.bytes = node.scratch_bytes;
    buf.first = buf.last = static_cast<uint16_t>(n);
  }
  buf.needed = true;
  return buf;
}

uint32_t offset_of(const Runtime& rt, uint32_t b) {
  return b < rt.tensor_count ? rt.tensors[b].offset : rt.nodes[b - rt.tensor_count].scratch_offset;
}

void set_offset(Runtime& rt, uint32_t b, uint32_t offset) {
  if (b < rt.tensor_count)
    rt.tensors[b].offset = offset;
  else
    rt.nodes[b - rt.tensor_count].scratch_offset = offset;
}

bool overlap_in_time(const Buffer& a, const Buffer& b) { return a.first <= b.last && b.first <= a.last; }

bool overlap_in_space(uint64_t a_off, uint64_t a_bytes, uint64_t b_off, uint64_t b_bytes) {
  return a_off < b_off + b_bytes && b_off < a_off + a_bytes;
}

}  // namespace

void compute_lifetimes(Runtime& rt) {
  for (uint32_t t = 0; t < rt.tensor_count; ++t) {
    rt.tensors[t].first_use = kNoOp;
    rt.tensors[t].last_use = kNoOp;
  }
  auto touch = [&](int32_t t, uint16_t op) {
    if (t < 0) return;
    TensorRec& rec = rt.tensors[t];
    if (rec.first_use == kNoOp || op < rec.first_use) rec.first_use = op;
    if (rec.last_use == kNoOp || op > rec.last_use) rec.last_use = op;
  };
  const uint16_t last_op = static_cast<uint16_t>(rt.node_count ? rt.node_count - 1 : 0);
  for (uint32_t t = 0; t < rt.tensor_count; ++t)
    if (rt.tensors[t].flags & kGraphInput) touch(static_cast<int32_t>(t), 0);
  for (uint32_t n = 0; n < rt.node_count; ++n) {
    const NodeRec& node = rt.nodes[n];
    for (int32_t i = 0; i < node.input_count; ++i) touch(node.input(i), static_cast<uint16_t>(n));
    for (int32_t i = 0; i < node.output_count; ++i) touch(node.output(i), static_cast<uint16_t>(n));
  }
  for (uint32_t t = 0; t < rt.tensor_count; ++t)
    if (rt.tensors[t].flags & kGraphOutput) touch(static_cast<int32_t>(t), last_op);
}

tt_status place_first_fit(Runtime& rt, uint32_t* planned_bytes, Message& msg) {
  const uint32_t count = rt.tensor_count + rt.node_count;
  for (uint32_t b = 0; b < count; ++b) set_offset(rt, b, kNoOffset);
  uint64_t total = 0;
  for (;;) {
    // Next: the largest unplaced buffer (ties: the one needed first, then the lower index).
    uint32_t next = count;
    Buffer nb = {0, 0, 0, false};
    for (uint32_t b = 0; b < count; ++b) {
      const Buffer buf = buffer_of(rt, b);
      if (!buf.needed || offset_of(rt, b) != kNoOffset) continue;
      if (next == count || buf.bytes > nb.bytes || (buf.bytes == nb.bytes && buf.first < nb.first)) {
        next = b;
        nb = buf;
      }
    }
    if (next == count) break;
    // Lowest offset free during its whole lifetime: start at 0 and jump past
    // every conflicting buffer (no offset before its end can be free either).
    uint64_t candidate = 0;
    bool moved = true;
    while (moved) {
      moved = false;
      for (uint32_t b = 0; b < count; ++b) {
        const uint32_t off = offset_of(rt, b);
        if (off == kNoOffset) continue;
        const Buffer buf = buffer_of(rt, b);
        if (!buf.needed || !overlap_in_time(buf, nb)) continue;
        if (nb.bytes && buf.bytes && overlap_in_space(candidate, nb.bytes, off, buf.bytes)) {
          candidate = align_up(static_cast<size_t>(off) + buf.bytes);
          moved = true;
        }
      }
    }
    if (candidate + nb.bytes > 0xFFFFFFF0u) {
      msg.clear();
      msg.add("tensors need more than 4 GB of arena");
      return TT_UNSUPPORTED;
    }
    set_offset(rt, next, static_cast<uint32_t>(candidate));
    if (candidate + nb.bytes > total) total = candidate + nb.bytes;
  }
  *planned_bytes = static_cast<uint32_t>(align_up(static_cast<size_t>(total)));
  return TT_OK;
}

tt_status place_at_offsets(Runtime& rt, const uint32_t* offsets, size_t count, uint32_t* planned_bytes,
                           Message& msg) {
  if (count != rt.tensor_count) {
    msg.clear();
    msg.add_all("memory plan has ", static_cast<unsigned long long>(count), " offsets, the model has ",
                rt.tensor_count, " tensors");
    return TT_INVALID_ARGUMENT;
  }
  uint64_t total = 0;
  for (uint32_t t = 0; t < rt.tensor_count; ++t) {
    const Buffer buf = buffer_of(rt, t);
    if (!buf.needed) {
      rt.tensors[t].offset = kNoOffset;
      continue;
    }
    const uint32_t off = offsets[t];
    if (off == kNoOffset || off % kAlignment != 0) {
      msg.clear();
      msg.add_all("memory plan: tensor ", t, " (", rt.model.tensor_name(static_cast<int32_t>(t)), ") ",
                  off == kNoOffset ? "has no offset" : "is not 16-byte aligned");
      return TT_INVALID_ARGUMENT;
    }
    rt.tensors[t].offset = off;
    if (off + static_cast<uint64_t>(buf.bytes) > total) total = off + static_cast<uint64_t>(buf.bytes);
  }
  // No two tensors alive at the same time may share bytes.
  for (uint32_t a = 0; a < rt.tensor_count; ++a) {
    const Buffer ba = buffer_of(rt, a);
    if (!ba.needed || !ba.bytes) continue;
    for (uint32_t b = a + 1; b < rt.tensor_count; ++b) {
      const Buffer bb = buffer_of(rt, b);
      if (!bb.needed || !bb.bytes || !overlap_in_time(ba, bb)) continue;
      if (overlap_in_space(rt.tensors[a].offset, ba.bytes, rt.tensors[b].offset, bb.bytes)) {
        msg.clear();
        msg.add_all("memory plan: tensors ", a, " (", rt.model.tensor_name(static_cast<int32_t>(a)), ") and ", b,
                    " (", rt.model.tensor_name(static_cast<int32_t>(b)), ") are alive at the same time and overlap");
        return TT_INVALID_ARGUMENT;
      }
    }
  }
  // Scratch memory: one region after the plan, shared (only one op runs at a time).
  const uint64_t scratch_at = align_up(static_cast<size_t>(total));
  for (uint32_t n = 0; n < rt.node_count; ++n) {
    NodeRec& node = rt.nodes[n];
    node.scratch_offset = node.scratch_bytes ? static_cast<uint32_t>(scratch_at) : kNoOffset;
    if (node.scratch_bytes && scratch_at + node.scratch_bytes > total) total = scratch_at + node.scratch_bytes;
  }
  if (total > 0xFFFFFFF0u) {
    msg.clear();
    msg.add("memory plan needs more than 4 GB");
    return TT_UNSUPPORTED;
  }
  *planned_bytes = static_cast<uint32_t>(align_up(static_cast<size_t>(total)));
  return TT_OK;
}

}  // namespace tt
