#include "host_file.h"

#include <string.h>

#include "semihosting.h"

enum { kSysOpen = 0x01, kSysWrite = 0x05, kSysRead = 0x06, kSysSeek = 0x0A, kSysFlen = 0x0C, kSysClock = 0x10 };

int host_open(const char* name, int mode) {
  const uint32_t args[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, (uint32_t)strlen(name)};
  return sh_call(kSysOpen, args);
}

int host_read(int handle, void* data, uint32_t len) {
  const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)data, len};
  return (int)len - sh_call(kSysRead, args);  // the call returns the bytes NOT read
}

int host_write(int handle, const void* data, uint32_t len) {
  const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)data, len};
  return sh_call(kSysWrite, args);
}

int host_seek(int handle, uint32_t position) {
  const uint32_t args[2] = {(uint32_t)handle, position};
  return sh_call(kSysSeek, args);
}

long host_length(int handle) {
  const uint32_t args[1] = {(uint32_t)handle};
  return sh_call(kSysFlen, args);
}

uint32_t host_centiseconds(void) { return (uint32_t)sh_call(kSysClock, 0); }
