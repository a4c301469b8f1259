// The test board's Arduino API (see Arduino.h): Print, Serial over semihosting files,
// pins, millis, and main() running setup() and loop().
#include "Arduino.h"

#include "host_file.h"
#include "semihosting.h"

extern "C" uint32_t tt_stack_high_water(void);
extern "C" uint32_t tt_stack_reserved(void);

// ------------------------------------------------------------------ Print
size_t Print::write(const uint8_t* data, size_t len) {
  size_t n = 0;
  while (len--) n += write(*data++);
  return n;
}

size_t Print::print(unsigned long value, int base) {
  char digits[33];
  int n = 0;
  if (base < 2 || base > 16) base = 10;
  do {
    digits[sizeof digits - 1 - n++] = "0123456789ABCDEF"[value % base];
    value /= base;
  } while (value);
  return write(reinterpret_cast<const uint8_t*>(digits + sizeof digits - n), n);
}

size_t Print::print(long value, int base) {
  if (value < 0 && base == DEC) return print('-') + print(0ul - static_cast<unsigned long>(value), base);
  return print(static_cast<unsigned long>(value), base);
}

size_t Print::print(double value, int digits) {  // as the Arduino cores print floats
  if (isnan(value)) return print("nan");
  if (isinf(value)) return print("inf");
  size_t n = 0;
  if (value < 0.0) {
    n += print('-');
    value = -value;
  }
  double rounding = 0.5;
  for (int i = 0; i < digits; ++i) rounding /= 10.0;
  value += rounding;
  const unsigned long whole = static_cast<unsigned long>(value);
  n += print(whole);
  if (digits > 0) n += print('.');
  double rest = value - static_cast<double>(whole);
  while (digits-- > 0) {
    rest *= 10.0;
    const int d = static_cast<int>(rest);
    n += print(static_cast<char>('0' + d));
    rest -= d;
  }
  return n;
}

// ------------------------------------------------------------------ Serial
namespace {

struct SerialInput {
  int handle = -1;
  uint8_t chunk[512];
  uint32_t have = 0, pos = 0;
  bool ended = false;
  bool line_start = true;

  bool fill() {  // at least one byte ready, unless the input has ended
    if (pos < have) return true;
    if (ended || handle < 0) return false;
    const int n = host_read(handle, chunk, sizeof chunk);
    if (n <= 0) {
      ended = true;
      return false;
    }
    have = static_cast<uint32_t>(n);
    pos = 0;
    return true;
  }
  int peek() { return fill() ? chunk[pos] : -1; }
  int take() {
    if (!fill()) return -1;
    const int c = chunk[pos++];
    line_start = c == '\n';
    return c;
  }
  bool at_control_line() { return line_start && peek() == '!'; }
};

SerialInput g_input;
char g_out[128];
size_t g_out_len = 0;
int g_pins[64];  // levels set by "!pin" lines; a pin nobody set reads HIGH (a released pull-up button)
bool g_pins_set[64];

void flush_output() {
  if (g_out_len) sh_write(g_out, g_out_len);
  g_out_len = 0;
}

// Apply one "!pin <n> <level>" line, if the input is at one. Unknown control lines fail the run.
void control_line() {
  if (!g_input.at_control_line()) return;
  char text[48];
  size_t n = 0;
  int c;
  while ((c = g_input.take()) >= 0 && c != '\n') {
    if (n + 1 < sizeof text) text[n++] = static_cast<char>(c);
  }
  text[n] = '\0';
  // "!pin <n> <0|1>" (parsed by hand: scanf would bring the C library's heap)
  int pin = -1, level = -1;
  if (strncmp(text, "!pin ", 5) == 0) {
    const char* p = text + 5;
    pin = 0;
    while (*p >= '0' && *p <= '9') pin = pin * 10 + (*p++ - '0');
    if (p == text + 5 || pin >= 64) pin = -1;
    if (p[0] == ' ' && (p[1] == '0' || p[1] == '1') && p[2] == '\0') level = p[1] - '0';
  }
  if (pin < 0 || level < 0) {
    flush_output();
    sh_puts("TT error bad control line in serial_in.txt: ");
    sh_puts(text);
    sh_puts("\n");
    sh_exit(1);
  }
  g_pins[pin] = level;
  g_pins_set[pin] = true;
}

}  // namespace

SerialPort Serial;

int SerialPort::available() { return g_input.at_control_line() ? 0 : (g_input.fill() ? 1 : 0); }
int SerialPort::read() { return g_input.at_control_line() ? -1 : g_input.take(); }
int SerialPort::peek() { return g_input.at_control_line() ? -1 : g_input.peek(); }

size_t SerialPort::write(uint8_t c) {
  g_out[g_out_len++] = static_cast<char>(c);
  if (c == '\n' || g_out_len == sizeof g_out) flush_output();
  return 1;
}

size_t SerialPort::write(const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) write(data[i]);
  return len;
}

// ------------------------------------------------------------------ pins and time
void pinMode(int pin, int mode) {
  (void)pin;
  (void)mode;
}

int digitalRead(int pin) { return (pin >= 0 && pin < 64 && g_pins_set[pin]) ? g_pins[pin] : HIGH; }
void digitalWrite(int pin, int value) {
  (void)pin;
  (void)value;
}

unsigned long millis(void) { return 10ul * host_centiseconds(); }

void delay(unsigned long ms) {
  const unsigned long start = millis();
  while (millis() - start < ms) {
  }
}

// ------------------------------------------------------------------ the board's main()
extern "C" {
typedef void (*init_function)(void);
extern init_function __init_array_start[], __init_array_end[];
}

int main() {
  // An Arduino core constructs the sketch's global objects before setup().
  for (init_function* f = __init_array_start; f < __init_array_end; ++f) (*f)();
  g_input.handle = host_open("serial_in.txt", HOST_READ_BINARY);
  if (g_input.handle < 0) {
    sh_puts("TT error cannot open serial_in.txt\n");
    return 1;
  }
  setup();
  // Run until the input is consumed, then a few more loops (to finish what the last line started).
  for (int after_end = 0; after_end < 4;) {
    control_line();
    loop();
    if (!g_input.fill()) ++after_end;
  }
  flush_output();
  sh_puts("TT stack high_water=");
  sh_put_uint(tt_stack_high_water());
  sh_puts(" reserved=");
  sh_put_uint(tt_stack_reserved());
  sh_puts("\nTT end\n");
  return 0;
}
