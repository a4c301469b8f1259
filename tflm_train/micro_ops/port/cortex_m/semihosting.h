// Minimal ARM semihosting (bkpt 0xAB): console output and exit, for QEMU's
// -semihosting. No stdio, no heap.
#ifndef TFLM_TRAIN_PORT_CORTEX_M_SEMIHOSTING_H_
#define TFLM_TRAIN_PORT_CORTEX_M_SEMIHOSTING_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void sh_write(const char* text, size_t len);
void sh_puts(const char* text);                  // no newline added
void sh_put_uint(uint32_t value);
void sh_put_int(int32_t value);
void sh_put_hex_bytes(const uint8_t* data, size_t len);
void sh_exit(int code) __attribute__((noreturn));  // 0: success, otherwise failure
int sh_call(int op, const void* arg);              // any semihosting operation (file I/O, clock)

#ifdef __cplusplus
}
#endif

#endif  // TFLM_TRAIN_PORT_CORTEX_M_SEMIHOSTING_H_
