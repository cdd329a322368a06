/* runtime.h: the freestanding guest runtime's API (console, exit, interrupts, privileged helpers). */
#ifndef ZUV_RUNTIME_H
#define ZUV_RUNTIME_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "lowcore.h"

#define NORETURN __attribute__((noreturn))
#define ALIGNED(n) __attribute__((aligned(n)))

/* ---- console (SCLP ASCII console, event type 0x1A) ---- */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int puts(const char *s);                      /* s and a newline */
void console_write(const char *s, size_t n);  /* raw bytes; one or more Write Event Data calls */
/* Read Event Data: copy pending console input into buf; returns its length, 0 when none is pending. */
size_t console_read(char *buf, size_t size);
/* Wait (enabled for external interruptions) until console input arrives, then read it; returns its length. */
size_t console_read_wait(char *buf, size_t size);
/* Set when a service signal announced pending events (console input); console_read clears it. */
extern volatile int sclp_input_pending;
/* Response code of the last SCLP command the runtime issued (0x0020 = normal completion). */
extern volatile uint16_t sclp_last_response;
/* One service call: SERVC with cmd and sccb, then wait for the service-signal interruption. Returns cc. */
int sclp_service_call(uint32_t cmd, void *sccb);

/* Read SCP Info: storage size in bytes and number of CPUs. Returns 0, or the SCLP response code. */
int sclp_read_scp_info(uint64_t *memory, unsigned *cpus);

/* ---- exits ---- */
NORETURN void exit(int code);              /* prints "EXIT: STATUS=<code << 1 | 1>", then SIGP STOP to itself */
NORETURN void disabled_wait(uint64_t code); /* loads a disabled-wait PSW with address code */
NORETURN void cpu_stop_self(void);         /* SIGP STOP to this CPU, repeated */
NORETURN void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* "PANIC: ...", exit(127) */

/* ---- interrupts ---- */
struct psw {
    uint64_t mask;
    uint64_t addr;
};

/* What the entry stubs build on the interrupt stack; a hook may change gr[] and psw to resume elsewhere. */
struct irq_frame {
    uint64_t gr[16];
    struct psw psw;       /* the old PSW: where and how the interrupted program resumes */
    uint8_t lc[0x80];     /* lowcore 0x80..0xff as it was on entry (codes, TEID, DXC, ...) */
};
_Static_assert(sizeof(struct irq_frame) == FRAME_SIZE, "irq_frame layout");

static inline uint16_t frame_lc16(const struct irq_frame *f, unsigned off)
{
    return (uint16_t)(f->lc[off - 0x80] << 8 | f->lc[off - 0x80 + 1]);
}
static inline uint32_t frame_lc32(const struct irq_frame *f, unsigned off)
{
    return (uint32_t)frame_lc16(f, off) << 16 | frame_lc16(f, off + 2);
}
static inline uint64_t frame_lc64(const struct irq_frame *f, unsigned off)
{
    return (uint64_t)frame_lc32(f, off) << 32 | frame_lc32(f, off + 4);
}

/* A hook returns nonzero when it handled the interruption; unhandled program and machine-check
 * interruptions, and unknown external or I/O interruptions, are fatal (panic). */
typedef int (*irq_hook_t)(struct irq_frame *f);
void set_ext_hook(irq_hook_t hook);
void set_svc_hook(irq_hook_t hook);
void set_pgm_hook(irq_hook_t hook);
void set_mck_hook(irq_hook_t hook);
void set_io_hook(irq_hook_t hook);

/* Last SVC interruption seen (any CPU). */
struct svc_info {
    uint16_t code;
    uint16_t ilc;
    struct psw old_psw;
    uint32_t count;
};
extern volatile struct svc_info last_svc;

/* Program interruption caught by pgm_catch(). */
struct pgm_info {
    uint16_t code;        /* interruption code (0x8e) */
    uint16_t ilc;         /* instruction length in bytes (0x8c) */
    uint32_t dxc;         /* data-exception code (0x90) */
    uint64_t teid;        /* translation-exception identification (0xa8) */
    struct psw old_psw;
};
/* Calls fn(arg) and returns 0, or returns 1 with *info filled when a program interruption happened in fn;
 * then the PSW mask is the one at the call (supervisor state, DAT as it was). CPU 0 only. */
int pgm_catch(void (*fn)(void *), void *arg, struct pgm_info *info);

/* Load an enabled-wait PSW (current mask + EXT) and return after one external interruption. */
void wait_for_ext(void);

/* ---- per-CPU set-up ---- */
struct rt_cpu_stacks {
    uint8_t main[RT_STACK_SIZE];
    uint8_t irq[IRQ_CLASSES][RT_IRQ_STACK_SIZE];
} ALIGNED(8);
/* Install the new PSWs and stack pointers in the lowcore at real address lowcore (0 for this CPU's own
 * prefix area, or another CPU's future prefix area), so that interruptions land in the runtime. */
void rt_lowcore_init(uint64_t lowcore, struct rt_cpu_stacks *stacks);
/* Prepare the 8 KiB area at lowcore for a stopped CPU: runtime lowcore plus a restart new PSW that makes
 * it call fn(arg) on its own main stack and stop itself when fn returns. */
void rt_secondary_prepare(uint64_t lowcore, struct rt_cpu_stacks *stacks, void (*fn)(uint64_t), uint64_t arg);

/* ---- privileged and other machine helpers ---- */
#define ctl_get(n) ({ uint64_t __v; asm volatile("stctg %1,%1,%0" : "=Q"(__v) : "i"(n)); __v; })
#define ctl_set(n, v) do { uint64_t __v = (v); asm volatile("lctlg %1,%1,%0" : : "Q"(__v), "i"(n) : "memory"); } while (0)
#define ctl_set_bit(n, bit) ctl_set(n, ctl_get(n) | (bit))
#define ctl_clear_bit(n, bit) ctl_set(n, ctl_get(n) & ~(uint64_t)(bit))

uint64_t psw_mask(void);                           /* current PSW mask (EPSW) */
uint16_t stap(void);                               /* this CPU's address */
/* SIGP: returns cc; *status (if not NULL) gets the status word when cc == 1. */
int sigp(uint16_t cpu, uint8_t order, uint64_t param, uint32_t *status);

static inline uint64_t abs_read64(uint64_t real)
{
    uint64_t v;
    asm volatile("lg %0,0(%1)" : "=d"(v) : "a"(real) : "memory");
    return v;
}
static inline void abs_write64(uint64_t real, uint64_t v)
{
    asm volatile("stg %0,0(%1)" : : "d"(v), "a"(real) : "memory");
}

/* ---- string and memory ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strstr(const char *h, const char *n);
/* Value of "key=NUMBER" in a command line (decimal or 0x hex), or dflt when absent or malformed. */
uint64_t cmdline_number(const char *cmdline, const char *key, uint64_t dflt);
/* EBCDIC (code page 037) to ASCII for printable characters; others become '.'. */
void ebcdic_to_ascii(char *dst, const uint8_t *src, size_t n);

#endif
