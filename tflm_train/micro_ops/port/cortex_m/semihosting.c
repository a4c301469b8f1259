#include "semihosting.h"

enum {
  kSysWrite0 = 0x04,  // write a NUL-terminated string to the debug console
  kSysExit = 0x18,
  kApplicationExit = 0x20026,   // ADP_Stopped_ApplicationExit: QEMU exits with status 0
  kRunTimeErrorUnknown = 0x20023
};

static int semihost(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

int sh_call(int op, const void* arg) { return semihost(op, arg); }

void sh_write(const char* text, size_t len) {
  char chunk[65];
  while (len) {
    const size_t n = len < sizeof chunk - 1 ? len : sizeof chunk - 1;
    for (size_t i = 0; i < n; ++i) chunk[i] = text[i];
    chunk[n] = '\0';
    semihost(kSysWrite0, chunk);
    text += n;
    len -= n;
  }
}

void sh_puts(const char* text) {
  size_t n = 0;
  while (text[n]) ++n;
  sh_write(text, n);
}

void sh_put_uint(uint32_t value) {
  char digits[12];
  int n = 0;
  do {
    digits[sizeof digits - 1 - n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value);
  sh_write(digits + sizeof digits - n, (size_t)n);
}

void sh_put_int(int32_t value) {
  if (value < 0) {
    sh_write("-", 1);
    sh_put_uint(0u - (uint32_t)value);
  } else {
    sh_put_uint((uint32_t)value);
  }
}

void sh_put_hex_bytes(const uint8_t* data, size_t len) {
  static const char kHex[] = "0123456789abcdef";
  char chunk[64];
  size_t n = 0;
  for (size_t i = 0; i < len; ++i) {
    chunk[n++] = kHex[data[i] >> 4];
    chunk[n++] = kHex[data[i] & 15];
    if (n == sizeof chunk) {
      sh_write(chunk, n);
      n = 0;
    }
  }
  if (n) sh_write(chunk, n);
}

void sh_exit(int code) {
  semihost(kSysExit, (const void*)(uintptr_t)(code == 0 ? kApplicationExit : kRunTimeErrorUnknown));
  for (;;) {
  }
}
