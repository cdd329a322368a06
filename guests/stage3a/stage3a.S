/*
 * stage3a.S: plaintext loader of an IBM Secure Execution image (spec 8.1-8.3, docs/se-image.md).
 *
 * Purpose: turn the running (non-secure) VM into a secure one. The image is a memory image loaded
 * at absolute 0; pvimg places this loader at 0x10000 and patches its parameter block (the last
 * 24 bytes, struct stage3a_args: hdr_offs, hdr_size, ipib_offs, offsets relative to the block).
 *
 * Protocol:
 *   1. store the SE header address and size into the PV IPL parameter block (IPIB, type 5):
 *      pv_hdr_addr at IPIB+0x78, pv_hdr_size at IPIB+0x80;
 *   2. STFLE: refuse to run without facility 161 (unpack);
 *   3. DIAGNOSE 0x308 subcode 8 "set PV IPIB": R1 = r2 = IPIB address (4 KiB aligned, R1 even),
 *      R3 = r4 = subcode, result in R1+1 = r3 (0x0001 = accepted);
 *   4. DIAGNOSE 0x308 subcode 10 "start PV": r2 = 0, r4 = 10. On success the hypervisor makes the
 *      VM secure and the CPU continues at the PSW of the SE header (stage3b); it never returns here.
 *      On failure r3 = cmd << 48 | rrc << 32 | rc << 16 | 0x0A02 (spec 8.3 step 5).
 *
 * Expected exit: none on success. Failures end in a disabled wait whose address is the code,
 * with the DIAG result left in r3:
 *   0x3A0001  facility 161 (unpack) not installed
 *   0x3A0008  DIAG 0x308 subcode 8 refused the IPIB (r3 = DIAG rc, e.g. 0x0402)
 *   0x3A000A  DIAG 0x308 subcode 10 failed (r3 = packed KVM command / UV rrc / UV rc / DIAG rc)
 */

#define STFLE_LIST      0x200   /* lowcore stfle_fac_list, as the real stage3a uses */
#define IPIB_HDR_ADDR   0x78
#define IPIB_HDR_SIZE   0x80
#define DIAG308_SET_PV  8
#define DIAG308_UNPACK  10
#define DIAG308_RC_OK   1

        .section .text.init, "ax"
        .globl  _init
/* 0x10000: entry when the image is started like a Linux kernel (jump to the real entry). */
_init:
        jg      _start

        .section .text.start, "ax"
        .globl  _start
/* 0x11000: entry of the short PSW at absolute 0. */
_start:
        larl    %r10,loader_parms
        lgr     %r2,%r10
        ag      %r2,16(%r10)                    /* r2 = IPIB address */
        lgr     %r1,%r10
        ag      %r1,0(%r10)                     /* r1 = SE header address */
        stg     %r1,IPIB_HDR_ADDR(%r2)
        lg      %r1,8(%r10)
        stg     %r1,IPIB_HDR_SIZE(%r2)

        /* Facility 161 is bit 1 of byte 20 of the STFLE list (three doublewords). */
        lghi    %r0,2
        lghi    %r4,STFLE_LIST
        stfle   0(%r4)
        tm      20(%r4),0x40
        jz      .Lno_unpack

        lghi    %r3,0
        lghi    %r4,DIAG308_SET_PV
        diag    %r2,%r4,0x308
        cghi    %r3,DIAG308_RC_OK
        jne     .Lset_failed

        lghi    %r2,0
        lghi    %r3,0
        lghi    %r4,DIAG308_UNPACK
        diag    %r2,%r4,0x308
        /* Only a failed secure IPL comes back. */
        larl    %r1,.Lpsw_unpack_failed
        lpswe   0(%r1)

.Lno_unpack:
        larl    %r1,.Lpsw_no_unpack
        lpswe   0(%r1)
.Lset_failed:
        larl    %r1,.Lpsw_set_failed
        lpswe   0(%r1)

        .balign 8
/* Disabled-wait PSWs: EA|BA, wait bit, all interruptions masked; the address is the code. */
.Lpsw_no_unpack:
        .quad   0x0002000180000000, 0x3A0001
.Lpsw_set_failed:
        .quad   0x0002000180000000, 0x3A0008
.Lpsw_unpack_failed:
        .quad   0x0002000180000000, 0x3A000A

        .section .loader_parms, "aw"
        .balign 8
        .globl  loader_parms
/* struct stage3a_args (patched by pvimg): hdr_offs, hdr_size, ipib_offs. */
loader_parms:
        .quad   0, 0, 0
