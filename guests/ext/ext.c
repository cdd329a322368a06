/* ext.c: external interruptions: clock comparator, CPU timer, emergency signal and external call to self. */
#include "runtime.h"

struct ext_rec {
    uint16_t code;
    uint16_t cpu;
    uint32_t param;
    uint32_t count;
};

static volatile struct ext_rec rec;

static uint64_t stck(void)
{
    uint64_t v;

    asm volatile("stck %0" : "=Q"(v) : : "cc");
    return v;
}

static void sckc(uint64_t v) { asm volatile("sckc %0" : : "Q"(v)); }
static void spt(uint64_t v) { asm volatile("spt %0" : : "Q"(v)); }

static uint64_t stckc(void)
{
    uint64_t v;

    asm volatile("stckc %0" : "=Q"(v));
    return v;
}

static int64_t stpt(void)
{
    int64_t v;

    asm volatile("stpt %0" : "=Q"(v));
    return v;
}

static int ext_hook(struct irq_frame *f)
{
    uint16_t code = frame_lc16(f, LC_EXT_CODE);

    if (code == EXT_SERVICE_SIGNAL)
        return 1;
    rec.code = code;
    rec.cpu = frame_lc16(f, LC_EXT_CPU_ADDR);
    rec.param = frame_lc32(f, LC_EXT_PARAM);
    rec.count++;
    /* Remove the conditions that would stay pending. */
    if (code == EXT_CLOCK_COMP)
        sckc(~0ULL);
    if (code == EXT_CPU_TIMER)
        spt(0x7fffffffffffffffULL);
    return 1;
}

/* Wait until one interruption other than the service signal arrives; returns how many arrived. */
static uint32_t wait_one(uint64_t subclass)
{
    uint32_t before = rec.count;
    unsigned spins = 0;

    ctl_set_bit(0, subclass);
    while (rec.count == before && spins++ < 1000000)
        wait_for_ext();
    ctl_clear_bit(0, subclass);
    return rec.count - before;
}

static void report(const char *what, uint32_t n)
{
    printf("%-20s interruptions=%u code=0x%04x", what, n, rec.code);
    if (rec.code == EXT_EMERGENCY_SIG || rec.code == EXT_EXTERNAL_CALL)
        printf(" from cpu %u", rec.cpu);
    printf("\n");
}

int main(const char *cmdline)
{
    uint64_t ckc, now;
    uint32_t n, status = 0;
    int cc;

    set_ext_hook(ext_hook);
    printf("ext: external interruptions\n");

    /* Clock comparator already passed (set to the current TOD): pending at once. (A value before the TOD
     * at machine start-up would do architecturally, but QEMU 7.2's timer computation then wraps.) */
    ckc = stck();
    sckc(ckc);
    printf("stckc returns the sckc value: %s\n", stckc() == ckc ? "yes" : "no");
    n = wait_one(CR0_CLOCK_COMP);
    report("clock comparator", n);

    /* Clock comparator a little ahead: the interruption comes, and only once TOD >= CKC. */
    ckc = stck() + (1000ULL << 12);  /* 1 ms */
    sckc(ckc);
    n = wait_one(CR0_CLOCK_COMP);
    now = stck();
    report("clock comparator+1ms", n);
    printf("tod >= ckc after it: %s\n", now >= ckc ? "yes" : "no");

    /* CPU timer: set to 1 ms; the interruption comes when it turns negative. */
    spt(1000ULL << 12);
    printf("cpu timer positive after spt: %s\n", stpt() > 0 ? "yes" : "no");
    n = wait_one(CR0_CPU_TIMER);
    report("cpu timer", n);

    /* CPU timer set to 0: negative at once. (A negative value would do architecturally, but QEMU 7.2
     * turns it into a timer far in the future.) */
    spt(0);
    n = wait_one(CR0_CPU_TIMER);
    report("cpu timer zero", n);

    /* SIGP emergency signal and external call to this CPU. */
    cc = sigp(stap(), SIGP_EMERGENCY, 0, &status);
    printf("sigp emergency to self: cc=%d\n", cc);
    n = wait_one(CR0_EMERGENCY_SIG);
    report("emergency signal", n);

    cc = sigp(stap(), SIGP_EXTERNAL_CALL, 0, &status);
    printf("sigp external call to self: cc=%d\n", cc);
    n = wait_one(CR0_EXTERNAL_CALL);
    report("external call", n);
    return 0;
}
