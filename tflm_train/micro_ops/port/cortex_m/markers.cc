// Where the QEMU instruction-count plugin (tools/qemu_icount_plugin.c) takes
// readings: each call of tt_mark(id) records the running instruction count.
// tt_calibrate brackets nothing (markers 0/1: the marker's own cost) and a loop
// of exactly 2001 instructions (markers 2/3), which checks the counting end to end.
#include <stdint.h>

extern "C" __attribute__((noinline, used)) void tt_mark(uint32_t id) { __asm__ volatile("" : : "r"(id) : "memory"); }

// Markers 0/1 around nothing and 2/3 around a loop of exactly 2001
// instructions (mov, then 1000 x subs+bne), in assembly so that the compiler
// cannot move other instructions in between: the two readings must differ by
// exactly 2001, which checks the instruction counting end to end.
extern "C" __attribute__((naked, noinline)) void tt_calibrate(void) {
  __asm__ volatile(
      "push {r4, lr}\n"
      "movs r0, #0\n"
      "bl tt_mark\n"
      "movs r0, #1\n"
      "bl tt_mark\n"
      "movs r0, #2\n"
      "bl tt_mark\n"
      "mov r0, #1000\n"
      "1: subs r0, r0, #1\n"
      "bne 1b\n"
      "movs r0, #3\n"
      "bl tt_mark\n"
      "pop {r4, pc}\n");
}
