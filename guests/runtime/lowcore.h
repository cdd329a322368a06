/* lowcore.h: lowcore offsets (architected and runtime-private) and PSW/CR bits, for C and assembler. */
#ifndef ZUV_LOWCORE_H
#define ZUV_LOWCORE_H

/* Architected lowcore fields (z/Architecture Principles of Operation, "Assigned storage locations"). */
#define LC_EXT_PARAM        0x080   /* external-interruption parameter (u32) */
#define LC_EXT_CPU_ADDR     0x084   /* external-interruption CPU address (u16) */
#define LC_EXT_CODE         0x086   /* external-interruption code (u16) */
#define LC_SVC_ILC          0x088   /* SVC instruction length (u16) */
#define LC_SVC_CODE         0x08a   /* SVC interruption code (u16) */
#define LC_PGM_ILC          0x08c   /* program instruction length (u16) */
#define LC_PGM_CODE         0x08e   /* program interruption code (u16) */
#define LC_DXC              0x090   /* data-exception code (u32) */
#define LC_TEID             0x0a8   /* translation-exception identification (u64) */
#define LC_STFL_FAC         0x0c8   /* facility list stored by STFL (u32) */

#define LC_RESTART_OLD_PSW  0x120
#define LC_EXT_OLD_PSW      0x130
#define LC_SVC_OLD_PSW      0x140
#define LC_PGM_OLD_PSW      0x150
#define LC_MCK_OLD_PSW      0x160
#define LC_IO_OLD_PSW       0x170
#define LC_RESTART_NEW_PSW  0x1a0
#define LC_EXT_NEW_PSW      0x1b0
#define LC_SVC_NEW_PSW      0x1c0
#define LC_PGM_NEW_PSW      0x1d0
#define LC_MCK_NEW_PSW      0x1e0
#define LC_IO_NEW_PSW       0x1f0

/* Runtime-private lowcore fields, in the range 0x200..0x4ff that the architecture leaves to the program. */
#define IRQ_CLASS_EXT       0
#define IRQ_CLASS_SVC       1
#define IRQ_CLASS_PGM       2
#define IRQ_CLASS_MCK       3
#define IRQ_CLASS_IO        4
#define IRQ_CLASSES         5
#define LC_RT_SAVE          0x200   /* 5 x 128 bytes: GRs saved on entry, one area per interruption class */
#define LC_RT_STACK         0x480   /* 5 x u64: top of each class's interrupt stack */
#define LC_RT_MAIN_STACK    0x4a8   /* u64: main stack top (used by a secondary CPU's restart entry) */
#define LC_RT_START_FN      0x4b0   /* u64: function a secondary CPU calls after restart */
#define LC_RT_START_ARG     0x4b8   /* u64: its argument */

/* Interrupt frame built on the interrupt stack (struct irq_frame in runtime.h). */
#define FRAME_GR            0       /* 16 x u64 */
#define FRAME_PSW           128     /* old PSW: mask, address */
#define FRAME_LC            144     /* copy of lowcore 0x80..0xff at entry */
#define FRAME_SIZE          272
#define STACK_FRAME_OVERHEAD 160    /* s390x ELF ABI register save area */

/* Stack sizes of struct rt_cpu_stacks (main stack first). */
#define RT_STACK_SIZE       65536
#define RT_IRQ_STACK_SIZE   8192

/* PSW mask bits. */
#define PSW_MASK_PER        0x4000000000000000
#define PSW_MASK_DAT        0x0400000000000000
#define PSW_MASK_IO         0x0200000000000000
#define PSW_MASK_EXT        0x0100000000000000
#define PSW_MASK_KEY        0x00f0000000000000
#define PSW_MASK_MCHECK     0x0004000000000000
#define PSW_MASK_WAIT       0x0002000000000000
#define PSW_MASK_PSTATE     0x0001000000000000
#define PSW_MASK_ASC        0x0000c00000000000
#define PSW_MASK_CC         0x0000300000000000
#define PSW_MASK_EA         0x0000000100000000
#define PSW_MASK_BA         0x0000000080000000
#define PSW_MASK_64         0x0000000180000000  /* EA + BA: 64-bit addressing */
#define PSW_MASK_DISABLED_WAIT 0x0002000180000000

/* Control register 0 bits (bit n of the 64-bit register is 1 << (63 - n)). */
#define CR0_LOW_ADDR_PROT   0x0000000010000000  /* bit 35 */
#define CR0_EDAT            0x0000000000800000  /* bit 40 */
#define CR0_FETCH_PROT_OVR  0x0000000002000000  /* bit 38 */
#define CR0_STOR_PROT_OVR   0x0000000001000000  /* bit 39 */
#define CR0_AFP             0x0000000000040000  /* bit 45 */
#define CR0_VECTOR          0x0000000000020000  /* bit 46 */
#define CR0_EMERGENCY_SIG   0x0000000000004000  /* bit 49 */
#define CR0_EXTERNAL_CALL   0x0000000000002000  /* bit 50 */
#define CR0_CLOCK_COMP      0x0000000000000800  /* bit 52 */
#define CR0_CPU_TIMER       0x0000000000000400  /* bit 53 */
#define CR0_SERVICE_SIGNAL  0x0000000000000200  /* bit 54 */

/* External-interruption codes. */
#define EXT_CLOCK_COMP      0x1004
#define EXT_CPU_TIMER       0x1005
#define EXT_EMERGENCY_SIG   0x1201
#define EXT_EXTERNAL_CALL   0x1202
#define EXT_SERVICE_SIGNAL  0x2401

/* SIGP orders. */
#define SIGP_SENSE          0x01
#define SIGP_EXTERNAL_CALL  0x02
#define SIGP_EMERGENCY      0x03
#define SIGP_START          0x04
#define SIGP_STOP           0x05
#define SIGP_RESTART        0x06
#define SIGP_STOP_STORE     0x09
#define SIGP_INITIAL_RESET  0x0b
#define SIGP_CPU_RESET      0x0c
#define SIGP_SET_PREFIX     0x0d
#define SIGP_STORE_STATUS   0x0e
#define SIGP_SET_ARCH       0x12
#define SIGP_COND_EMERGENCY 0x13
#define SIGP_SENSE_RUNNING  0x15

#endif
