// One-line error messages into a fixed caller buffer (no heap, no stdio).
#ifndef TFLM_TRAIN_MICRO_MESSAGE_H_
#define TFLM_TRAIN_MICRO_MESSAGE_H_

#include <stddef.h>
#include <stdint.h>

namespace tt {

// A string that is not NUL-terminated (names stored in the flatbuffer).
struct Str {
  const char* data;
  uint32_t length;
};

class Message {
 public:
  Message(char* buf, size_t capacity) : buf_(buf), cap_(capacity) { clear(); }
  void clear() {
    len_ = 0;
    if (cap_) buf_[0] = '\0';
  }
  Message& add(const char* s);
  Message& add(Str s);
  Message& add(long long v);
  Message& add(unsigned long long v);
  Message& add(int v) { return add(static_cast<long long>(v)); }
  Message& add(long v) { return add(static_cast<long long>(v)); }
  Message& add(unsigned v) { return add(static_cast<unsigned long long>(v)); }
  Message& add(unsigned long v) { return add(static_cast<unsigned long long>(v)); }
  Message& add(char c);

  template <typename First, typename... Rest>
  Message& add_all(const First& first, const Rest&... rest) {
    add(first);
    return add_all(rest...);
  }
  Message& add_all() { return *this; }

  const char* c_str() const { return cap_ ? buf_ : ""; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
};

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_MESSAGE_H_
