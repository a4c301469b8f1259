// A small Arduino API layer for tests: just what the TinyTrainer examples use, on the
// QEMU mps2-an386 Cortex-M4F firmware (tflm_train/micro_ops/port/cortex_m), with the
// Arduino Mbed OS core's names (ARDUINO_ARCH_MBED, mbed::FlashIAP in FlashIAP.h).
//
// The host side of the board is files in QEMU's working directory, reached by semihosting:
//   serial_in.txt   what arrives on Serial. A line "!pin <n> <0|1>" is not serial data: it
//                   sets what digitalRead(n) returns from the next loop() on (a button).
//   flash.bin       the flash chip (FlashIAP reads, erases and programs it; it survives
//                   between runs, which is what a reset does to flash).
// Serial output goes to the semihosting console. main() runs the global constructors,
// setup(), then loop() until serial_in.txt is consumed (and a few loops more), and ends
// with "TT stack high_water=<bytes> reserved=<bytes>" and "TT end".
#ifndef TESTS_ARDUINO_API_ARDUINO_H_
#define TESTS_ARDUINO_API_ARDUINO_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARDUINO 10819
#define ARDUINO_ARCH_MBED 1

#define HIGH 1
#define LOW 0
#define INPUT 0
#define OUTPUT 1
#define INPUT_PULLUP 2
#define LED_BUILTIN 13
#define DEC 10
#define HEX 16

typedef bool boolean;
typedef uint8_t byte;

void pinMode(int pin, int mode);
int digitalRead(int pin);
void digitalWrite(int pin, int value);
unsigned long millis(void);
void delay(unsigned long ms);

class Print {
 public:
  virtual size_t write(uint8_t c) = 0;
  virtual size_t write(const uint8_t* data, size_t len);
  size_t write(const char* text) { return write(reinterpret_cast<const uint8_t*>(text), strlen(text)); }
  size_t print(const char* text) { return write(text); }
  size_t print(char c) { return write(static_cast<uint8_t>(c)); }
  size_t print(int value, int base = DEC) { return print(static_cast<long>(value), base); }
  size_t print(unsigned int value, int base = DEC) { return print(static_cast<unsigned long>(value), base); }
  size_t print(long value, int base = DEC);
  size_t print(unsigned long value, int base = DEC);
  size_t print(double value, int digits = 2);
  size_t println() { return write("\r\n"); }
  template <typename T>
  size_t println(T value) { return print(value) + println(); }
  template <typename T>
  size_t println(T value, int format) { return print(value, format) + println(); }
};

class Stream : public Print {
 public:
  virtual int available() = 0;
  virtual int read() = 0;
  virtual int peek() = 0;
};

class SerialPort : public Stream {
 public:
  void begin(unsigned long baud) { (void)baud; }
  explicit operator bool() const { return true; }
  int available() override;
  int read() override;
  int peek() override;
  size_t write(uint8_t c) override;
  size_t write(const uint8_t* data, size_t len) override;
  using Print::write;
};

extern SerialPort Serial;

void setup(void);
void loop(void);

#endif  // TESTS_ARDUINO_API_ARDUINO_H_
