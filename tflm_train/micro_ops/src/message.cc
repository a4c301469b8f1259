#include "message.h"

namespace tt {

Message& Message::add(char c) {
  if (len_ + 1 < cap_) {
    buf_[len_++] = c;
    buf_[len_] = '\0';
  }
  return *this;
}

Message& Message::add(const char* s) {
  if (!s) return *this;
  while (*s) add(*s++);
  return *this;
}

Message& Message::add(Str s) {
  // Names come from the model: print only printable ASCII.
  for (uint32_t i = 0; i < s.length && s.data; ++i) {
    const char c = s.data[i];
    add((c >= 32 && c < 127) ? c : '?');
  }
  return *this;
}

Message& Message::add(unsigned long long v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) add(digits[--n]);
  return *this;
}

Message& Message::add(long long v) {
  if (v < 0) {
    add('-');
    // Negate in unsigned arithmetic: also correct for the most negative value.
    return add(0ull - static_cast<unsigned long long>(v));
  }
  return add(static_cast<unsigned long long>(v));
}

}  // namespace tt
