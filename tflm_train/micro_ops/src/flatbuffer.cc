#include "flatbuffer.h"

namespace tt {

void FlatReader::fail(const char* what, uint32_t pos) {
  if (!error_) {
    error_ = what;
    error_pos_ = pos;
  }
}

bool FlatReader::in_bounds(uint64_t pos, uint64_t count, const char* what) {
  if (error_) return false;
  if (pos > len_ || count > len_ - pos) {
    fail(what, pos > len_ ? len_ : static_cast<uint32_t>(pos));
    return false;
  }
  return true;
}

Table FlatReader::table_at_pos(uint32_t pos) {
  Table t;
  if (pos == 0) {
    fail("table at offset 0", pos);
    return t;
  }
  if (!in_bounds(pos, 4, "table past the end of the buffer")) return t;
  const int64_t vtable = static_cast<int64_t>(pos) - load_i32(buf_ + pos);
  if (vtable < 0 || !in_bounds(static_cast<uint64_t>(vtable), 4, "vtable outside the buffer")) {
    fail("vtable outside the buffer", pos);
    return t;
  }
  const uint16_t vt_size = load_u16(buf_ + vtable);
  const uint16_t tbl_size = load_u16(buf_ + vtable + 2);
  if (vt_size < 4 || (vt_size & 1) != 0 || tbl_size < 4) {
    fail("invalid vtable header", static_cast<uint32_t>(vtable));
    return t;
  }
  if (!in_bounds(static_cast<uint64_t>(vtable), vt_size, "vtable past the end of the buffer")) return t;
  if (!in_bounds(pos, tbl_size, "table past the end of the buffer")) return t;
  t.pos = pos;
  t.vtable = static_cast<uint32_t>(vtable);
  t.vtable_size = vt_size;
  t.size = tbl_size;
  return t;
}

Table FlatReader::root() {
  if (!in_bounds(0, 8, "buffer shorter than a flatbuffer header")) return Table();
  return table_at_pos(load_u32(buf_));
}

uint32_t FlatReader::field_pos(const Table& t, int field, uint32_t size) {
  if (error_ || !t.present()) return 0;
  const uint32_t slot = 4u + 2u * static_cast<uint32_t>(field);
  if (slot + 2 > t.vtable_size) return 0;  // field newer than the writer: absent
  const uint16_t off = load_u16(buf_ + t.vtable + slot);
  if (off == 0) return 0;
  if (off < 4 || static_cast<uint32_t>(off) + size > t.size) {
    fail("field outside its table", t.pos);
    return 0;
  }
  return t.pos + off;
}

uint8_t FlatReader::u8(const Table& t, int field, uint8_t def) {
  const uint32_t p = field_pos(t, field, 1);
  return p ? buf_[p] : def;
}
int8_t FlatReader::i8(const Table& t, int field, int8_t def) {
  const uint32_t p = field_pos(t, field, 1);
  return p ? static_cast<int8_t>(buf_[p]) : def;
}
uint16_t FlatReader::u16(const Table& t, int field, uint16_t def) {
  const uint32_t p = field_pos(t, field, 2);
  return p ? load_u16(buf_ + p) : def;
}
int32_t FlatReader::i32(const Table& t, int field, int32_t def) {
  const uint32_t p = field_pos(t, field, 4);
  return p ? load_i32(buf_ + p) : def;
}
uint32_t FlatReader::u32(const Table& t, int field, uint32_t def) {
  const uint32_t p = field_pos(t, field, 4);
  return p ? load_u32(buf_ + p) : def;
}
uint64_t FlatReader::u64(const Table& t, int field, uint64_t def) {
  const uint32_t p = field_pos(t, field, 8);
  return p ? load_u64(buf_ + p) : def;
}
float FlatReader::f32(const Table& t, int field, float def) {
  const uint32_t p = field_pos(t, field, 4);
  return p ? load_f32(buf_ + p) : def;
}

Table FlatReader::table_field(const Table& t, int field) {
  const uint32_t p = field_pos(t, field, 4);
  if (!p) return Table();
  const uint64_t target = static_cast<uint64_t>(p) + load_u32(buf_ + p);
  if (!in_bounds(target, 4, "sub-table offset past the end of the buffer")) return Table();
  return table_at_pos(static_cast<uint32_t>(target));
}

Vector FlatReader::vector_field(const Table& t, int field, uint32_t elem_size) {
  Vector v;
  const uint32_t p = field_pos(t, field, 4);
  if (!p) return v;
  const uint64_t target = static_cast<uint64_t>(p) + load_u32(buf_ + p);
  if (!in_bounds(target, 4, "vector offset past the end of the buffer")) return v;
  const uint32_t length = load_u32(buf_ + target);
  const uint64_t data = target + 4;
  if (!in_bounds(data, static_cast<uint64_t>(length) * elem_size, "vector past the end of the buffer")) return v;
  v.data = static_cast<uint32_t>(data);
  v.length = length;
  v.elem_size = elem_size;
  return v;
}

bool FlatReader::element_pos(const Vector& v, uint32_t index, uint32_t size, uint32_t* pos) {
  if (error_) return false;
  if (index >= v.length || v.elem_size != size) {
    fail("vector index out of range", v.data);
    return false;
  }
  *pos = v.data + index * size;  // in bounds: checked when the vector was read
  return true;
}

Table FlatReader::table_in(const Vector& v, uint32_t index) {
  uint32_t p;
  if (!element_pos(v, index, 4, &p)) return Table();
  const uint64_t target = static_cast<uint64_t>(p) + load_u32(buf_ + p);
  if (!in_bounds(target, 4, "table offset past the end of the buffer")) return Table();
  return table_at_pos(static_cast<uint32_t>(target));
}

int32_t FlatReader::i32_in(const Vector& v, uint32_t index) {
  uint32_t p;
  return element_pos(v, index, 4, &p) ? load_i32(buf_ + p) : 0;
}

int64_t FlatReader::i64_in(const Vector& v, uint32_t index) {
  uint32_t p;
  return element_pos(v, index, 8, &p) ? load_i64(buf_ + p) : 0;
}

float FlatReader::f32_in(const Vector& v, uint32_t index) {
  uint32_t p;
  return element_pos(v, index, 4, &p) ? load_f32(buf_ + p) : 0.0f;
}

}  // namespace tt
