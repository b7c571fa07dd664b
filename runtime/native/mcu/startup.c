/* Bare-metal start for the Cortex-M firmware: vector table, .data/.bss set-up, FPU (and Helium) on, the stack
 * painted so its high-water mark can be measured, then main(). Symbols come from link.ld. */
#include <stdint.h>
#include <string.h>

#define STACK_PAINT 0xC5AC5AC5u

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_bottom, __stack_top;
int main(void);
void lem_fw_exit(int code);

void lem_fw_reset(void);
void lem_fw_fault(void);

__attribute__((section(".vectors"), used)) static const uintptr_t vectors[16] = {
    (uintptr_t)&__stack_top, (uintptr_t)lem_fw_reset, (uintptr_t)lem_fw_fault, (uintptr_t)lem_fw_fault,
    (uintptr_t)lem_fw_fault, (uintptr_t)lem_fw_fault, (uintptr_t)lem_fw_fault, 0, 0, 0, 0,
    (uintptr_t)lem_fw_fault, (uintptr_t)lem_fw_fault, 0, (uintptr_t)lem_fw_fault, (uintptr_t)lem_fw_fault};

void lem_fw_fault(void) { lem_fw_exit(3); }

/* Bytes of stack ever used since reset: from the top down to the lowest word no longer holding the paint. */
uint32_t lem_fw_stack_high_water(void) {
    const volatile uint32_t *p = &__stack_bottom;
    while (p < &__stack_top && *p == STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p);
}

__attribute__((noinline)) static void paint_stack(void) {
    volatile uint32_t *p = &__stack_bottom;
    uint32_t *limit = (uint32_t *)__builtin_frame_address(0) - 32; /* stay well below this frame */
    while (p < limit) *p++ = STACK_PAINT;
}

void lem_fw_reset(void) {
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20; /* CP10, CP11 full access: FPU and Helium */
    __asm volatile("dsb\n\tisb" ::: "memory");
    memcpy(&__data_start, &__data_load, (size_t)((uintptr_t)&__data_end - (uintptr_t)&__data_start));
    memset(&__bss_start, 0, (size_t)((uintptr_t)&__bss_end - (uintptr_t)&__bss_start));
    paint_stack();
    lem_fw_exit(main());
}
