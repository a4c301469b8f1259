// Bounds-checked reading of a FlatBuffers binary (the container format of .tflite files).
//
// Written from the public FlatBuffers format description: a buffer starts with a
// uint32 offset to the root table; a table starts with an int32 "soffset" whose
// subtraction from the table position locates its vtable; a vtable is a list of
// uint16: its own size, the table's size, then one offset per field (0 = field
// absent, default value applies). Offsets to sub-tables, vectors and strings are
// uint32 relative to where they are stored; a vector is a uint32 length followed
// by its elements.
//
// Every position and length is checked against the buffer size before it is
// read, so a malformed buffer yields an error, never an out-of-bounds read. The
// first error is kept (reason and byte position); after an error every accessor
// returns defaults, so callers may check failed() once after a group of reads.
// Multi-byte values are read with memcpy: no alignment assumption.
#ifndef TFLM_TRAIN_MICRO_FLATBUFFER_H_
#define TFLM_TRAIN_MICRO_FLATBUFFER_H_

#include <stdint.h>
#include <string.h>

namespace tt {

inline uint16_t load_u16(const uint8_t* p) { uint16_t v; memcpy(&v, p, sizeof v); return v; }
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; memcpy(&v, p, sizeof v); return v; }
inline int32_t load_i32(const uint8_t* p) { int32_t v; memcpy(&v, p, sizeof v); return v; }
inline int64_t load_i64(const uint8_t* p) { int64_t v; memcpy(&v, p, sizeof v); return v; }
inline uint64_t load_u64(const uint8_t* p) { uint64_t v; memcpy(&v, p, sizeof v); return v; }
inline float load_f32(const uint8_t* p) { float v; memcpy(&v, p, sizeof v); return v; }

// A validated table: its position, vtable position and sizes. pos == 0 means
// "absent" (no table can start at 0: the root offset is stored there).
struct Table {
  uint32_t pos = 0;
  uint32_t vtable = 0;
  uint16_t vtable_size = 0;
  uint16_t size = 0;
  bool present() const { return pos != 0; }
};

// A validated vector: position of element 0 and element count. An absent
// vector has length 0.
struct Vector {
  uint32_t data = 0;
  uint32_t length = 0;
  uint32_t elem_size = 0;
};

class FlatReader {
 public:
  FlatReader() = default;
  FlatReader(const uint8_t* buf, uint32_t len) : buf_(buf), len_(len) {}

  const uint8_t* base() const { return buf_; }
  uint32_t size() const { return len_; }
  bool failed() const { return error_ != nullptr; }
  const char* error() const { return error_ ? error_ : ""; }
  uint32_t error_pos() const { return error_pos_; }
  // Record an error found by a caller (a value that is in bounds but invalid).
  void fail(const char* what, uint32_t pos);

  Table root();
  Table table_at_pos(uint32_t pos);

  // Scalar fields; `def` when absent (or after an error).
  uint8_t u8(const Table& t, int field, uint8_t def = 0);
  int8_t i8(const Table& t, int field, int8_t def = 0);
  uint16_t u16(const Table& t, int field, uint16_t def = 0);
  int32_t i32(const Table& t, int field, int32_t def = 0);
  uint32_t u32(const Table& t, int field, uint32_t def = 0);
  uint64_t u64(const Table& t, int field, uint64_t def = 0);
  float f32(const Table& t, int field, float def = 0.0f);

  // Reference fields: a sub-table, a vector of `elem_size`-byte scalars or of
  // table offsets (elem_size 4), a string (a vector of bytes).
  Table table_field(const Table& t, int field);
  Vector vector_field(const Table& t, int field, uint32_t elem_size);
  Vector string_field(const Table& t, int field) { return vector_field(t, field, 1); }

  // Elements of a validated vector (index checked).
  Table table_in(const Vector& v, uint32_t index);
  int32_t i32_in(const Vector& v, uint32_t index);
  int64_t i64_in(const Vector& v, uint32_t index);
  float f32_in(const Vector& v, uint32_t index);
  const uint8_t* bytes(const Vector& v) const { return v.length ? buf_ + v.data : nullptr; }

 private:
  bool in_bounds(uint64_t pos, uint64_t count, const char* what);
  // Position of a scalar/offset field of `size` bytes, or 0 if absent.
  uint32_t field_pos(const Table& t, int field, uint32_t size);
  bool element_pos(const Vector& v, uint32_t index, uint32_t size, uint32_t* pos);

  const uint8_t* buf_ = nullptr;
  uint32_t len_ = 0;
  const char* error_ = nullptr;
  uint32_t error_pos_ = 0;
};

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_FLATBUFFER_H_
