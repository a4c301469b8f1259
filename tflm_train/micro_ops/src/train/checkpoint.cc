// Power-safe checkpoints of a trainer's state (include/tflm_train.h, tt_checkpoint_*).
//
// Two slots (A: first half of the storage, B: second half). Slot layout:
//   [header: TT_CHECKPOINT_HEADER_BYTES, padded to write_size][payload, padded to write_size]
// Header (little-endian u32s): "TTCK", version, model CRC32, model length,
// sequence, payload length, 0, CRC32(header bytes 0..27 + payload).
// Payload: steps done, logit |max| (float bits), then the SRAM bytes of every
// persistent tensor (trained parameters, RNG state) in tensor order.
//
// A save never touches the slot holding the newest valid checkpoint, and
// programs the header last: until the header is complete the new slot's CRC
// fails, so a power cut can only leave the previous checkpoint or the new one.
#include <string.h>

#include "train_interpreter.h"

namespace tt {
namespace train {
namespace {

constexpr uint8_t kMagic[4] = {'T', 'T', 'C', 'K'};
constexpr uint32_t kHeaderBytes = TT_CHECKPOINT_HEADER_BYTES;
constexpr uint32_t kChunk = TT_CHECKPOINT_MAX_WRITE_SIZE;  // stack buffer for program / read
constexpr uint32_t kStateBytes = 8;                       // steps done, logit |max|

// CRC-32 (IEEE, reflected 0xEDB88320) with a 16-entry table: small enough for flash.
uint32_t crc32_update(uint32_t crc, const uint8_t* p, size_t n) {
  static const uint32_t kTable[16] = {0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4,
                                      0x4DB26158, 0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
                                      0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C};
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    crc = (crc >> 4) ^ kTable[crc & 15];
    crc = (crc >> 4) ^ kTable[crc & 15];
  }
  return ~crc;
}

void store_u32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }

bool power_of_two(uint32_t v) { return v && !(v & (v - 1)); }
uint32_t round_up(uint32_t n, uint32_t unit) { return (n + unit - 1) / unit * unit; }

struct Header {
  uint32_t version = 0, model_crc = 0, model_len = 0, sequence = 0, payload_len = 0, crc = 0;
};

void encode_header(const Header& h, uint8_t* out) {
  memcpy(out, kMagic, 4);
  store_u32(out + 4, h.version);
  store_u32(out + 8, h.model_crc);
  store_u32(out + 12, h.model_len);
  store_u32(out + 16, h.sequence);
  store_u32(out + 20, h.payload_len);
  store_u32(out + 24, 0);
  store_u32(out + 28, h.crc);
}

// Geometry of the two slots for one storage and one model.
struct Layout {
  uint32_t slot_bytes = 0;     // each slot: a whole number of pages
  uint32_t header_region = 0;  // header padded to write_size
  uint32_t payload_len = 0;
  uint32_t used = 0;           // header region + padded payload
};

// Visit the payload in order as (pointer, length) segments of the trainer's state.
template <typename Fn>
bool visit_payload(TrainRuntime& rt, uint8_t* state, Fn&& fn) {
  if (!fn(state, kStateBytes)) return false;
  for (uint32_t t = 0; t < rt.tensors.length; ++t) {
    const TensorDesc d = decode_tensor(rt, static_cast<int32_t>(t));
    if (d.storage != tfmt::kPersistent || !d.arena_bytes) continue;
    if (!fn(rt.arena + d.offset, static_cast<uint32_t>(d.arena_bytes))) return false;
  }
  return true;
}

uint32_t payload_length(TrainRuntime& rt) {
  uint32_t n = 0;
  uint8_t state[kStateBytes] = {};
  visit_payload(rt, state, [&](uint8_t*, uint32_t len) {
    n += len;
    return true;
  });
  return n;
}

struct Session {
  tt_trainer* tr;
  TrainRuntime& rt;
  const tt_storage& s;
  Message msg;
  Layout layout;
  bool model_crc_known = false;
  uint32_t model_crc_value = 0;

  Session(tt_trainer* t, TrainRuntime& r, const tt_storage& st)
      : tr(t), rt(r), s(st), msg(t->message, sizeof(t->message)) {}

  // The model's CRC32, computed on first use: a restore from empty or corrupted storage
  // never reads the whole model (a CRC over 100+ KB of flash on an MCU).
  uint32_t model_crc() {
    if (!model_crc_known) model_crc_value = crc32_update(0, rt.model.base(), rt.model.size());
    model_crc_known = true;
    return model_crc_value;
  }

  template <typename... Parts>
  tt_status fail(tt_status status, const Parts&... parts) {
    msg.clear();
    msg.add_all(parts...);
    return status;
  }

  tt_status check_storage() {
    if (!s.erase_page || !s.program || !s.read)
      return fail(TT_INVALID_ARGUMENT, "storage: erase_page, program and read callbacks are required");
    if (!power_of_two(s.write_size) || s.write_size > kChunk || !power_of_two(s.page_size) ||
        s.page_size < s.write_size)
      return fail(TT_INVALID_ARGUMENT, "storage: write_size ", s.write_size, " and page_size ", s.page_size,
                  " must be powers of two with write_size <= ", kChunk, " and <= page_size");
    layout.slot_bytes = s.size / 2 / s.page_size * s.page_size;
    layout.header_region = round_up(kHeaderBytes, s.write_size);
    layout.payload_len = payload_length(rt);
    layout.used = layout.header_region + round_up(layout.payload_len, s.write_size);
    if (layout.used > layout.slot_bytes)
      return fail(TT_INVALID_ARGUMENT, "storage: ", s.size, " bytes give two slots of ", layout.slot_bytes,
                  " bytes, a checkpoint of this model needs ", layout.used, " per slot (",
                  2 * round_up(layout.used, s.page_size), " bytes in all)");
    return TT_OK;
  }

  uint32_t slot_base(uint32_t slot) const { return slot * layout.slot_bytes; }

  bool read(uint32_t offset, void* data, uint32_t len) { return s.read(s.context, offset, data, len) == 0; }

  // Slot state: TT_OK (valid checkpoint of this model: *h), TT_NO_CHECKPOINT (why: in why[]),
  // TT_STORAGE_ERROR.
  tt_status check_slot(uint32_t slot, Header* h, const char** why) {
    uint8_t raw[kHeaderBytes];
    if (!read(slot_base(slot), raw, kHeaderBytes)) return TT_STORAGE_ERROR;
    *why = "empty";
    if (memcmp(raw, kMagic, 4) != 0) {
      for (uint32_t i = 0; i < kHeaderBytes; ++i)
        if (raw[i] != s.erased_value) *why = "no checkpoint header";
      return TT_NO_CHECKPOINT;
    }
    h->version = load_u32(raw + 4);
    h->model_crc = load_u32(raw + 8);
    h->model_len = load_u32(raw + 12);
    h->sequence = load_u32(raw + 16);
    h->payload_len = load_u32(raw + 20);
    h->crc = load_u32(raw + 28);
    if (h->payload_len > layout.slot_bytes - layout.header_region) {
      *why = "payload length past the slot";
      return TT_NO_CHECKPOINT;
    }
    // CRC first: a torn header must not be reported as "another model".
    uint32_t crc = crc32_update(0, raw, kHeaderBytes - 4);
    uint8_t buf[kChunk];
    for (uint32_t pos = 0; pos < h->payload_len;) {
      const uint32_t n = h->payload_len - pos < kChunk ? h->payload_len - pos : kChunk;
      if (!read(slot_base(slot) + layout.header_region + pos, buf, n)) return TT_STORAGE_ERROR;
      crc = crc32_update(crc, buf, n);
      pos += n;
    }
    if (crc != h->crc) {
      *why = "CRC mismatch (an interrupted save or corrupted storage)";
      return TT_NO_CHECKPOINT;
    }
    if (h->version != TT_CHECKPOINT_VERSION) {
      *why = "another format version";
      return TT_NO_CHECKPOINT;
    }
    if (h->model_len != rt.model.size() || h->model_crc != model_crc()) {
      *why = "a checkpoint of another model";
      return TT_NO_CHECKPOINT;
    }
    if (h->payload_len != layout.payload_len) {
      *why = "payload length differs from the model's parameters";
      return TT_NO_CHECKPOINT;
    }
    return TT_OK;
  }

  // The newest valid slot (-1 if none; then reasons[] say why); TT_STORAGE_ERROR on a read failure.
  tt_status newest(int32_t* slot, Header* best, const char* reasons[2]) {
    *slot = -1;
    for (uint32_t k = 0; k < 2; ++k) {
      Header h;
      const tt_status st = check_slot(k, &h, &reasons[k]);
      if (st == TT_STORAGE_ERROR) return fail(TT_STORAGE_ERROR, "storage read failed (slot ", k ? "B" : "A", ")");
      if (st != TT_OK) continue;
      if (*slot < 0 || static_cast<int32_t>(h.sequence - best->sequence) > 0) {
        *slot = static_cast<int32_t>(k);
        *best = h;
      }
    }
    return TT_OK;
  }
};

void fill_info(tt_checkpoint_info* info, const Header& h, uint32_t slot, uint32_t steps_done) {
  if (!info) return;
  info->sequence = h.sequence;
  info->slot = slot;
  info->payload_bytes = h.payload_len;
  info->steps_done = steps_done;
}

void state_record(const TrainRuntime& rt, uint8_t* state) {
  store_u32(state, rt.steps_done);
  memcpy(state + 4, &rt.logit_absmax, 4);
}

tt_status save(Session& ss, tt_checkpoint_info* info) {
  TrainRuntime& rt = ss.rt;
  const tt_storage& s = ss.s;
  int32_t current;
  Header prev;
  const char* reasons[2];
  tt_status st = ss.newest(&current, &prev, reasons);
  if (st != TT_OK) return st;
  const uint32_t slot = current == 0 ? 1 : 0;
  const uint32_t base = ss.slot_base(slot);
  Header h;
  h.version = TT_CHECKPOINT_VERSION;
  h.model_crc = ss.model_crc();
  h.model_len = rt.model.size();
  h.sequence = current < 0 ? 1 : prev.sequence + 1;
  h.payload_len = ss.layout.payload_len;

  // 1. Erase the pages the checkpoint occupies (header page first).
  for (uint32_t off = 0; off < ss.layout.used; off += s.page_size)
    if (s.erase_page(s.context, base + off) != 0)
      return ss.fail(TT_STORAGE_ERROR, "storage erase failed at ", base + off);

  // 2. Program the payload in chunks (the last one padded with erased bytes), CRC on the way.
  uint8_t header[kHeaderBytes];
  encode_header(h, header);
  uint32_t crc = crc32_update(0, header, kHeaderBytes - 4);
  uint8_t buf[kChunk];
  uint32_t fill = 0, written = 0;
  bool ok = true;
  auto flush = [&](uint32_t len) {
    ok = s.program(s.context, base + ss.layout.header_region + written, buf, len) == 0;
    written += len;
    fill = 0;
    return ok;
  };
  uint8_t state[kStateBytes];
  state_record(rt, state);
  visit_payload(rt, state, [&](uint8_t* p, uint32_t len) {
    crc = crc32_update(crc, p, len);
    while (len) {
      const uint32_t n = kChunk - fill < len ? kChunk - fill : len;
      memcpy(buf + fill, p, n);
      fill += n;
      p += n;
      len -= n;
      if (fill == kChunk && !flush(kChunk)) return false;
    }
    return true;
  });
  if (ok && fill) {
    const uint32_t padded = round_up(fill, s.write_size);
    memset(buf + fill, s.erased_value, padded - fill);
    flush(padded);
  }
  if (!ok) return ss.fail(TT_STORAGE_ERROR, "storage program failed at ", base + ss.layout.header_region + written);

  // 3. The header last: the checkpoint exists once it is complete.
  h.crc = crc;
  encode_header(h, header);
  memcpy(buf, header, kHeaderBytes);
  memset(buf + kHeaderBytes, s.erased_value, ss.layout.header_region - kHeaderBytes);
  if (s.program(s.context, base, buf, ss.layout.header_region) != 0)
    return ss.fail(TT_STORAGE_ERROR, "storage program failed at ", base);

  // 4. Read back.
  Header back;
  const char* why;
  st = ss.check_slot(slot, &back, &why);
  if (st != TT_OK || back.sequence != h.sequence)
    return ss.fail(TT_STORAGE_ERROR, "checkpoint read back from slot ", slot ? "B" : "A", " is not valid (",
                   st == TT_STORAGE_ERROR ? "read failed" : why, ")");
  fill_info(info, h, slot, rt.steps_done);
  ss.msg.clear();
  return TT_OK;
}

tt_status restore(Session& ss, tt_checkpoint_info* info) {
  TrainRuntime& rt = ss.rt;
  int32_t slot;
  Header h;
  const char* reasons[2];
  tt_status st = ss.newest(&slot, &h, reasons);
  if (st != TT_OK) return st;
  if (slot < 0)
    return ss.fail(TT_NO_CHECKPOINT, "no valid checkpoint of this model: slot A: ", reasons[0], "; slot B: ",
                   reasons[1]);
  // Verified; now copy it in, checking the CRC once more (the storage could change between reads).
  uint8_t header[kHeaderBytes];
  Header unsigned_h = h;
  unsigned_h.crc = 0;
  encode_header(unsigned_h, header);
  uint32_t crc = crc32_update(0, header, kHeaderBytes - 4);
  uint32_t pos = ss.slot_base(static_cast<uint32_t>(slot)) + ss.layout.header_region;
  uint8_t state[kStateBytes];
  const bool ok = visit_payload(rt, state, [&](uint8_t* p, uint32_t len) {
    if (!ss.read(pos, p, len)) return false;
    crc = crc32_update(crc, p, len);
    pos += len;
    return true;
  });
  if (!ok || crc != h.crc) {
    ss.tr->impl = nullptr;  // parameters may be a mix: the trainer must be initialized again
    return ss.fail(TT_STORAGE_ERROR, "storage ", ok ? "changed" : "read failed",
                   " while the checkpoint was copied in: call tt_train_init again");
  }
  rt.steps_done = load_u32(state);
  memcpy(&rt.logit_absmax, state + 4, 4);
  fill_info(info, h, static_cast<uint32_t>(slot), rt.steps_done);
  ss.msg.clear();
  return TT_OK;
}

// --- the RAM flash simulation (tt_ram_flash_storage)
int ram_erase(void* context, uint32_t offset) {
  tt_ram_flash* f = static_cast<tt_ram_flash*>(context);
  if (offset % f->page_size || f->page_size > f->size || offset > f->size - f->page_size) return -1;
  memset(f->memory + offset, 0xFF, f->page_size);
  ++f->erase_count;
  return 0;
}

int ram_program(void* context, uint32_t offset, const void* data, uint32_t len) {
  tt_ram_flash* f = static_cast<tt_ram_flash*>(context);
  if (offset % f->write_size || len % f->write_size || offset > f->size || len > f->size - offset) return -1;
  const uint8_t* d = static_cast<const uint8_t*>(data);
  for (uint32_t i = 0; i < len; ++i) f->memory[offset + i] &= d[i];  // NOR: programming only clears bits
  ++f->program_count;
  return 0;
}

int ram_read(void* context, uint32_t offset, void* data, uint32_t len) {
  tt_ram_flash* f = static_cast<tt_ram_flash*>(context);
  if (offset > f->size || len > f->size - offset) return -1;
  memcpy(data, f->memory + offset, len);
  return 0;
}

tt_status run(tt_trainer* tr, const tt_storage* storage, tt_checkpoint_info* info, bool saving) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = static_cast<TrainRuntime*>(tr->impl);
  Message msg(tr->message, sizeof(tr->message));
  if (!rt) {
    msg.add("trainer is not initialized (tt_train_init failed or was not called)");
    return tr->status = TT_NOT_READY;
  }
  if (!storage) {
    msg.add("storage is NULL");
    return tr->status = TT_INVALID_ARGUMENT;
  }
  Session ss(tr, *rt, *storage);
  tt_status st = ss.check_storage();
  if (st == TT_OK) st = saving ? save(ss, info) : restore(ss, info);
  return tr->status = st;
}

}  // namespace
}  // namespace train
}  // namespace tt

extern "C" {

size_t tt_checkpoint_storage_bytes(tt_trainer* tr, uint32_t page_size, uint32_t write_size) {
  tt::train::TrainRuntime* rt = tr ? static_cast<tt::train::TrainRuntime*>(tr->impl) : nullptr;
  if (!rt || !tt::train::power_of_two(page_size) || !tt::train::power_of_two(write_size) ||
      write_size > tt::train::kChunk || write_size > page_size)
    return 0;
  const uint32_t used = tt::train::round_up(tt::train::kHeaderBytes, write_size) +
                        tt::train::round_up(tt::train::payload_length(*rt), write_size);
  return 2 * static_cast<size_t>(tt::train::round_up(used, page_size));
}

tt_status tt_checkpoint_save(tt_trainer* tr, const tt_storage* storage, tt_checkpoint_info* info) {
  return tt::train::run(tr, storage, info, true);
}

tt_status tt_checkpoint_restore(tt_trainer* tr, const tt_storage* storage, tt_checkpoint_info* info) {
  return tt::train::run(tr, storage, info, false);
}

void tt_ram_flash_storage(tt_ram_flash* flash, uint8_t* memory, uint32_t size, uint32_t page_size,
                          uint32_t write_size, tt_storage* storage) {
  flash->memory = memory;
  flash->size = size;
  flash->page_size = page_size;
  flash->write_size = write_size;
  flash->erase_count = flash->program_count = 0;
  storage->context = flash;
  storage->size = size;
  storage->page_size = page_size;
  storage->write_size = write_size;
  storage->erased_value = 0xFF;
  storage->erase_page = tt::train::ram_erase;
  storage->program = tt::train::ram_program;
  storage->read = tt::train::ram_read;
}

}  // extern "C"
