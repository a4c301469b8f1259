// Reset and fault handlers, vector table, stack painting for a bare Cortex-M4F.
#include <stdint.h>
#include <string.h>

#include "semihosting.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
extern int main(void);

#define TT_STACK_PAINT 0xC0FFEE11u

// Paint the unused stack so that the high-water mark can be measured later.
static void paint_stack(void) {
  uint32_t sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (uint32_t* p = &_sstack; (uint32_t)(uintptr_t)p < sp - 64; ++p) *p = TT_STACK_PAINT;
}

// Bytes of stack ever used: from the top down to the lowest overwritten word.
uint32_t tt_stack_high_water(void) {
  const uint32_t* p = &_sstack;
  while (p < &_estack && *p == TT_STACK_PAINT) ++p;
  return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

uint32_t tt_stack_reserved(void) { return (uint32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack); }

void Reset_Handler(void) {
  // The FPU first: code built with -mfloat-abi=hard may use it anywhere.
  volatile uint32_t* cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= 0xFu << 20;  // CP10, CP11 full access
  __asm__ volatile("dsb\n isb" ::: "memory");
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  paint_stack();
  sh_exit(main());
}

static void fault(const char* what) {
  sh_puts("TT fault ");
  sh_puts(what);
  sh_puts("\n");
  sh_exit(1);
}

void NMI_Handler(void) { fault("NMI"); }
void HardFault_Handler(void) { fault("HardFault"); }
void MemManage_Handler(void) { fault("MemManage"); }
void BusFault_Handler(void) { fault("BusFault"); }
void UsageFault_Handler(void) { fault("UsageFault"); }
void Default_Handler(void) { fault("unexpected interrupt"); }

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used)) const vector_t tt_vectors[16] = {
    (vector_t)(uintptr_t)&_estack,  // initial stack pointer
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMonitor
    0,
    Default_Handler,  // PendSV
    Default_Handler,  // SysTick
};
