/* crt0.S: entry point, parameter area, interrupt entry stubs, program-check catching and waits. */
#include "lowcore.h"

/*
 * 0x10000 is where QEMU (and zuv) start a -kernel ELF and, because the start address is 0x10000, where
 * they write the kernel command line: at 0x10480, inside this section, so the bytes are part of the image.
 */
    .section .head,"ax",@progbits
    .globl _start
_start:
    jg      rt_start64
    .org    0x400
    .globl  rt_parmarea
rt_parmarea:
    .org    0x430                   /* u64 at 0x10430: max command line size; 0 means the default 896 */
    .quad   0
    .org    0x480
    .globl  rt_cmdline
rt_cmdline:
    .org    0x800

    .text
    .globl  rt_start64
rt_start64:
    /* Clear .bss with MVCLE (pad byte 0). */
    larl    %r2,__bss_start
    larl    %r3,__bss_end
    sgr     %r3,%r2
    lghi    %r4,0
    lghi    %r5,0
0:  mvcle   %r2,%r4,0
    jo      0b
    larl    %r15,rt_cpu0_stacks
    agfi    %r15,RT_STACK_SIZE-STACK_FRAME_OVERHEAD
    xc      0(8,%r15),0(%r15)
    brasl   %r14,rt_init_cpu0
    larl    %r2,rt_cmdline
    brasl   %r14,main
    brasl   %r14,exit               /* exit(main's return value) */
1:  j       1b

/*
 * Interrupt entry: save the GRs in this class's lowcore save area, switch to this class's interrupt
 * stack (nesting: the stack top in the lowcore moves down while a handler runs), build a struct irq_frame
 * (GRs, old PSW, lowcore 0x80..0xff), call rt_irq_dispatch(frame, class), then reload the (possibly
 * changed) GRs and old PSW from the frame and return with LPSWE.
 * All lowcore references are displacements with base 0: real addresses, relative to this CPU's prefix.
 */
    .macro  IRQ_ENTRY name, cls, oldpsw
    .globl  \name
\name:
    stmg    %r0,%r15,LC_RT_SAVE+\cls*128
    lg      %r15,LC_RT_STACK+\cls*8
    aghi    %r15,-(STACK_FRAME_OVERHEAD+FRAME_SIZE)
    stg     %r15,LC_RT_STACK+\cls*8      /* push: a nested interruption of this class goes below */
    xc      0(8,%r15),0(%r15)
    mvc     STACK_FRAME_OVERHEAD+FRAME_GR(128,%r15),LC_RT_SAVE+\cls*128
    mvc     STACK_FRAME_OVERHEAD+FRAME_PSW(16,%r15),\oldpsw
    mvc     STACK_FRAME_OVERHEAD+FRAME_LC(128,%r15),0x80
    la      %r2,STACK_FRAME_OVERHEAD(%r15)
    lghi    %r3,\cls
    brasl   %r14,rt_irq_dispatch
    la      %r1,STACK_FRAME_OVERHEAD+FRAME_SIZE(%r15)
    stg     %r1,LC_RT_STACK+\cls*8      /* pop */
    /* Resume from the PSW in the frame, copied to this class's save area (above 511, so that low-address
     * protection does not apply to the runtime's own stores). */
    mvc     LC_RT_SAVE+\cls*128(16),STACK_FRAME_OVERHEAD+FRAME_PSW(%r15)
    lmg     %r0,%r15,STACK_FRAME_OVERHEAD+FRAME_GR(%r15)
    lpswe   LC_RT_SAVE+\cls*128
    .endm

    IRQ_ENTRY rt_ext_entry, IRQ_CLASS_EXT, LC_EXT_OLD_PSW
    IRQ_ENTRY rt_svc_entry, IRQ_CLASS_SVC, LC_SVC_OLD_PSW
    IRQ_ENTRY rt_pgm_entry, IRQ_CLASS_PGM, LC_PGM_OLD_PSW
    IRQ_ENTRY rt_mck_entry, IRQ_CLASS_MCK, LC_MCK_OLD_PSW
    IRQ_ENTRY rt_io_entry,  IRQ_CLASS_IO,  LC_IO_OLD_PSW

/* Restart entry of a secondary CPU: main stack, start function and argument come from its lowcore. */
    .globl  rt_secondary_entry
rt_secondary_entry:
    lg      %r15,LC_RT_MAIN_STACK
    aghi    %r15,-STACK_FRAME_OVERHEAD
    xc      0(8,%r15),0(%r15)
    lg      %r2,LC_RT_START_FN
    lg      %r3,LC_RT_START_ARG
    brasl   %r14,rt_secondary_start     /* does not return */
2:  j       2b

/*
 * int pgm_catch(void (*fn)(void *), void *arg, struct pgm_info *info)
 * Calls fn(arg). Returns 0 if it returned normally; 1 if a program interrupt happened in it, after the
 * interrupt handler filled *info and resumed here with the PSW mask pgm_catch was called with.
 */
    .globl  pgm_catch
pgm_catch:
    stmg    %r6,%r15,48(%r15)       /* caller's save area */
    lgr     %r1,%r15
    aghi    %r15,-STACK_FRAME_OVERHEAD  /* own frame: fn saves its registers in it, not over ours */
    stg     %r1,0(%r15)             /* back chain */
    epsw    %r0,%r5                 /* r0 = PSW bits 0-31, r5 = PSW bits 32-63 */
    sllg    %r0,%r0,32
    llgfr   %r5,%r5
    ogr     %r0,%r5
    larl    %r1,rt_catch
    stg     %r0,8(%r1)              /* rt_catch.mask */
    stg     %r4,16(%r1)             /* rt_catch.info */
    stg     %r15,24(%r1)            /* rt_catch.sp */
    mvghi   0(%r1),1                /* rt_catch.armed */
    lgr     %r1,%r2
    lgr     %r2,%r3
    basr    %r14,%r1
    larl    %r1,rt_catch
    mvghi   0(%r1),0
    lghi    %r2,0
    lmg     %r6,%r15,STACK_FRAME_OVERHEAD+48(%r15)
    br      %r14
    .globl  rt_catch_resume
rt_catch_resume:                    /* the handler loads r15 = rt_catch.sp and r2 = 1 */
    lmg     %r6,%r15,STACK_FRAME_OVERHEAD+48(%r15)
    br      %r14

/*
 * void wait_for_ext(void): load an enabled-wait PSW (current mask + EXT + WAIT) and return after one
 * external interruption has been handled (the dispatcher clears WAIT and EXT in the old PSW).
 */
    .globl  wait_for_ext
wait_for_ext:
    aghi    %r15,-16
    epsw    %r0,%r1
    sllg    %r0,%r0,32
    llgfr   %r1,%r1
    ogr     %r0,%r1
    oihh    %r0,0x0102              /* PSW_MASK_EXT | PSW_MASK_WAIT */
    stg     %r0,0(%r15)
    larl    %r1,3f
    stg     %r1,8(%r15)
    lpswe   0(%r15)
3:  aghi    %r15,16
    br      %r14

/* void disabled_wait(uint64_t code): load a disabled-wait PSW whose address is code. */
    .globl  disabled_wait
disabled_wait:
    aghi    %r15,-16
    llihh   %r0,0x0002
    oilh    %r0,0x8000
    oihl    %r0,0x0001
    stg     %r0,0(%r15)
    stg     %r2,8(%r15)
    lpswe   0(%r15)
4:  j       4b

    .section .note.GNU-stack,"",@progbits
