// Semihosting file operations (ARM semihosting SYS_OPEN/READ/WRITE/SEEK/FLEN/CLOCK): the
// test board's serial line and flash chip are files on the host (see Arduino.h).
#ifndef TESTS_ARDUINO_API_HOST_FILE_H_
#define TESTS_ARDUINO_API_HOST_FILE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { HOST_READ_BINARY = 1, HOST_READ_WRITE_BINARY = 3 };  // fopen modes "rb", "r+b"
int host_open(const char* name, int mode);                 // handle, -1 on failure
int host_read(int handle, void* data, uint32_t len);       // bytes read
int host_write(int handle, const void* data, uint32_t len);  // 0 on success
int host_seek(int handle, uint32_t position);              // 0 on success
long host_length(int handle);                              // -1 on failure
uint32_t host_centiseconds(void);                          // since the run started

#ifdef __cplusplus
}
#endif

#endif  // TESTS_ARDUINO_API_HOST_FILE_H_
