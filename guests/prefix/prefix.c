/* prefix.c: SET PREFIX / STORE PREFIX: the lowcore moves, prefixing swaps the two 8 KiB blocks both ways,
 * interruptions use the new lowcore, low prefix bits are ignored, a prefix beyond storage is refused. */
#include "runtime.h"

#define MARK 0x800  /* a lowcore offset the architecture and the runtime leave free */

static uint8_t new_lowcore[8192] ALIGNED(8192);

static uint32_t stpx(void)
{
    uint32_t p;

    asm volatile("stpx %0" : "=Q"(p));
    return p;
}

static void spx(uint32_t p)
{
    asm volatile("spx %0" : : "Q"(p) : "memory");
}

static uint32_t spx_arg;
static void do_spx(void *arg) { spx(spx_arg); }
static void do_operation(void *arg) { asm volatile(".long 0x52000000" : : : "memory"); }

static const char *yn(int b) { return b ? "yes" : "no"; }

int main(const char *cmdline)
{
    const uint64_t p = (uint64_t)new_lowcore;
    const uint64_t a = 0xaaaaaaaaaaaaaaaaULL, b = 0xbbbbbbbbbbbbbbbbULL, sentinel = 0x5e5e5e5e5e5e5e5eULL;
    struct pgm_info info;
    unsigned i;
    int caught;

    printf("prefix: stpx=0x%x\n", stpx());
    for (i = 0; i < 8192; i += 8)  /* the new lowcore starts as a copy of the current one */
        abs_write64(p + i, abs_read64(i));
    abs_write64(MARK, a);
    abs_write64(p + MARK, b);
    abs_write64(LC_SVC_OLD_PSW + 8, sentinel);
    abs_write64(p + LC_SVC_OLD_PSW + 8, sentinel);

    spx((uint32_t)p);
    printf("spx new area: stpx is the new area: %s\n", yn(stpx() == (uint32_t)p));
    printf("real 0x%x reads the new area: %s\n", MARK, yn(abs_read64(MARK) == b));
    printf("real prefix+0x%x reads absolute 0x%x: %s\n", MARK, MARK, yn(abs_read64(p + MARK) == a));

    asm volatile("svc 3" : : : "memory");
    printf("svc 3 taken: code=%u; old psw in the new lowcore: %s; absolute 0x140 untouched: %s\n", last_svc.code,
           yn(abs_read64(LC_SVC_OLD_PSW + 8) == last_svc.old_psw.addr), yn(abs_read64(p + LC_SVC_OLD_PSW + 8) == sentinel));

    caught = pgm_catch(do_operation, NULL, &info);
    printf("program interruption with the new prefix: %s code=0x%04x, lowcore code at real 0x8e: 0x%04lx\n",
           yn(caught), info.code, abs_read64(LC_PGM_ILC) >> 32 & 0xffff);

    spx_arg = (uint32_t)p + 0x1234;
    spx(spx_arg);
    printf("spx area+0x1234: stpx is the area: %s\n", yn(stpx() == (uint32_t)p));

    spx_arg = 0x7fffe000;  /* beyond the end of storage */
    memset(&info, 0, sizeof(info));
    caught = pgm_catch(do_spx, NULL, &info);
    printf("spx 0x7fffe000: interruption %s code=0x%04x ilc=%u; prefix unchanged: %s\n", yn(caught), info.code,
           info.ilc, yn(stpx() == (uint32_t)p));

    spx(0);
    printf("spx 0: stpx=0x%x; real 0x%x reads absolute 0x%x again: %s\n", stpx(), MARK, MARK, yn(abs_read64(MARK) == a));
    return 0;
}
