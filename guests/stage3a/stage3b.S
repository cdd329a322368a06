/*
 * stage3b.S: secure launcher of an IBM Secure Execution image (spec 8.1, 8.3 step 4).
 *
 * Purpose: first code that runs in the secure guest, at the PSW of the SE header. It is the last
 * secure component, so it arrives decrypted and measured. Position independent. pvimg patches
 * its argument block (the last 64 bytes, struct stage3b_args):
 *   +0x00 kernel  {src, size}   memory image of the kernel as loaded at absolute 0
 *   +0x10 cmdline {src, size}   NUL-terminated kernel command line (size includes the NUL)
 *   +0x20 initrd  {src, size}   stays where it is
 *   +0x30 psw     {mask, addr}  kernel entry PSW (0x0000000180000000, 0x10000 for Linux)
 *
 * Protocol: move kernel[0x10000:size] to 0x10000 (the first 64 KiB, lowcore and IPL code, are not
 * copied; destination below source, so a forward copy is safe), copy the command line to 0x10480
 * (at most the kernel's max_command_line_size at 0x10430, or 896 bytes when that is 0), store
 * initrd start/size at 0x10408/0x10410 when there is an initrd, then LPSWE the kernel PSW.
 *
 * Expected exit: none (the kernel runs). Failures end in a disabled wait with code:
 *   0x3B0001 kernel image smaller than 64 KiB; 0x3B0002 command line too long;
 *   0x3B0003 command line not NUL-terminated.
 */

#define IMAGE_LOAD_ADDRESS      0x10000
#define INITRD_START            0x10408
#define INITRD_SIZE             0x10410
#define MAX_COMMAND_LINE_SIZE   0x10430
#define COMMAND_LINE            0x10480
#define LEGACY_COMMAND_LINE     896

        .section .text.start, "ax"
        .globl  _start
_start:
        larl    %r10,loader_parms

        /* Kernel: memmove(0x10000, src + 0x10000, size - 0x10000). */
        lg      %r3,8(%r10)
        clgfi   %r3,IMAGE_LOAD_ADDRESS
        jl      .Lbad_kernel
        slgfi   %r3,IMAGE_LOAD_ADDRESS
        lgfi    %r2,IMAGE_LOAD_ADDRESS
        lg      %r4,0(%r10)
        algfi   %r4,IMAGE_LOAD_ADDRESS
        lgr     %r5,%r3
0:      mvcle   %r2,%r4,0
        jo      0b

        /* Command line. */
        lg      %r3,24(%r10)
        ltgr    %r3,%r3
        jz      .Linitrd
        lgfi    %r1,MAX_COMMAND_LINE_SIZE
        lg      %r1,0(%r1)
        ltgr    %r1,%r1
        jnz     1f
        lghi    %r1,LEGACY_COMMAND_LINE
1:      clgr    %r3,%r1
        jh      .Lbad_cmdline_size
        lg      %r4,16(%r10)
        la      %r1,0(%r3,%r4)
        cliy    -1(%r1),0
        jne     .Lbad_cmdline_nul
        lgfi    %r2,COMMAND_LINE
        lgr     %r5,%r3
2:      mvcle   %r2,%r4,0
        jo      2b

.Linitrd:
        lg      %r3,40(%r10)
        ltgr    %r3,%r3
        jz      .Lgo
        lgfi    %r1,INITRD_START
        mvc     0(8,%r1),32(%r10)
        lgfi    %r1,INITRD_SIZE
        stg     %r3,0(%r1)

.Lgo:
        lpswe   48(%r10)

.Lbad_kernel:
        larl    %r1,.Lpsw_bad_kernel
        lpswe   0(%r1)
.Lbad_cmdline_size:
        larl    %r1,.Lpsw_bad_cmdline_size
        lpswe   0(%r1)
.Lbad_cmdline_nul:
        larl    %r1,.Lpsw_bad_cmdline_nul
        lpswe   0(%r1)

        .balign 8
.Lpsw_bad_kernel:
        .quad   0x0002000180000000, 0x3B0001
.Lpsw_bad_cmdline_size:
        .quad   0x0002000180000000, 0x3B0002
.Lpsw_bad_cmdline_nul:
        .quad   0x0002000180000000, 0x3B0003

        .section .loader_parms, "aw"
        .balign 8
        .globl  loader_parms
/* struct stage3b_args (patched by pvimg). */
loader_parms:
        .quad   0, 0, 0, 0, 0, 0, 0, 0
